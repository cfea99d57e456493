"""JSON validates against the published schema; HTML and Markdown escape what came from the run."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from torch.utils.tensorboard import SummaryWriter

from forensics.analyze import analyze
from forensics.render import render_html, render_json, render_markdown
from forensics.render.assets import SCRIPT_FILES

from conftest import REPO, SAMPLE_RUNS

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
SAMPLE_NAMES = sorted(path.name for path in SAMPLE_RUNS.iterdir() if path.is_dir() and not path.name.startswith("_"))


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_json_report_validates(name):
    document = json.loads(render_json(analyze(SAMPLE_RUNS / name)))
    jsonschema.validate(document, SCHEMA)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_markdown_fits_on_one_screen(name):
    text = render_markdown(analyze(SAMPLE_RUNS / name))
    assert len(text.splitlines()) <= 45, text


def _hostile_run(tmp_path: Path) -> Path:
    """A real event file whose tag names carry markup."""
    run = tmp_path / "hostile"
    writer = SummaryWriter(log_dir=str(run / "tb"))
    for step in range(20):
        writer.add_scalar("<script>alert(1)</script>", float(step), step)
        writer.add_scalar("loss|with`pipes`", float("nan") if step == 10 else 1.0, step)
    writer.close()
    return run


def test_html_escapes_everything_from_the_run(tmp_path):
    html = render_html(analyze(_hostile_run(tmp_path)))
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The only scripts are the page's own inline ones (allowed by hash) and inert JSON data islands.
    assert html.count("<script>") == len(SCRIPT_FILES)
    assert html.count("<script") == len(SCRIPT_FILES) + html.count('<script type="application/json"')


def test_markdown_escapes_pipes_and_backticks(tmp_path):
    report = analyze(_hostile_run(tmp_path))
    text = render_markdown(report)
    finding_rows = [line for line in text.splitlines() if line.startswith("| error") or line.startswith("| warning")]
    assert finding_rows, text
    for row in finding_rows:
        assert row.count("|") - row.count("\\|") == 5  # 4 columns: pipes from the run are escaped
