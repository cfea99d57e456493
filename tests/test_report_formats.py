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
# The committed sample runs: those MANIFEST.json describes and those with their own generator script beside
# them; other folders there (generated corpora of many runs, generator packages) are not one run each.
SAMPLE_NAMES = sorted(set(json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text()))
                      | {path.stem for path in SAMPLE_RUNS.glob("*.py") if (SAMPLE_RUNS / path.stem).is_dir()})


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


def _documented_codes() -> dict[str, str]:
    """code -> status column of the "Finding codes" table in docs/report-schema.md."""
    text = (REPO / "docs" / "report-schema.md").read_text()
    table = text[text.index("## Finding codes"):].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| `")]
    return {cells[0].strip().strip("`"): cells[1].strip() for cells in rows}


def test_the_codes_table_lists_exactly_the_registered_codes():
    """Both directions from the registry: a new check needs one row, a removed one loses its row."""
    from forensics.checks import INTERNAL_ERROR, REGISTRY

    documented = _documented_codes()
    registered = {check.code for check in REGISTRY} | {INTERNAL_ERROR}
    assert sorted(registered - set(documented)) == [], "registered but not documented"
    assert sorted(set(documented) - registered) == [], "documented but not registered"
    assert set(documented.values()) == {"implemented"}


def test_the_schema_accepts_any_snake_case_code_and_no_other():
    """The JSON schema holds no list of codes, so registering a check never edits it."""
    finding = SCHEMA["$defs"]["finding"]["properties"]["code"]
    assert "enum" not in finding
    for code in ("lr_collapse", "some_future_check", "internal_error"):
        jsonschema.validate(code, finding)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("Not A Code", finding)


def test_the_schema_ties_limited_and_healthy_to_the_unchecked_list():
    report = json.loads(render_json(analyze(SAMPLE_RUNS / "healthy_onecycle")))
    assert report["verdict"]["status"] == "healthy"
    forged = json.loads(json.dumps(report))
    forged["verdict"]["unchecked"].append({"code": "constant_lr", "reason": "no schedule stated",
                                           "missing": ["stated_schedule"], "enable": "--schedule",
                                           "limits_verdict": True})
    with pytest.raises(jsonschema.ValidationError):  # healthy with a gap that limits it
        jsonschema.validate(forged, SCHEMA)
    forged["verdict"]["status"] = "limited"
    jsonschema.validate(forged, SCHEMA)
    forged["verdict"]["unchecked"] = []
    with pytest.raises(jsonschema.ValidationError):  # limited with nothing that limits it
        jsonschema.validate(forged, SCHEMA)
