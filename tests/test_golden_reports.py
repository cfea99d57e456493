"""Golden reports: the JSON, Markdown and HTML of each sample run, compared after scrubbing.

Volatile parts (generation time, tool version, absolute paths) are scrubbed. On a mismatch the actual
output is saved under tests/.golden-actual/ and the failure message prints the command that accepts
the new output:  FORENSICS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_reports.py
"""

from __future__ import annotations

import os
import re

import pytest

from forensics import __version__
from forensics.analyze import analyze
from forensics.render import render_html, render_json, render_markdown
from forensics.render.assets import STYLE_FILES, page_assets

from conftest import REPO, SAMPLE_RUNS

GOLDEN = REPO / "tests" / "golden"
ACTUAL = REPO / "tests" / ".golden-actual"
RUNS = ["healthy_onecycle", "nan_divergence", "resume_scheduler_reset", "stuck_lr_onecycle_per_epoch"]
RENDERERS = {"json": render_json, "md": render_markdown, "html": render_html}


def scrub(text: str) -> str:
    """Replace what changes between machines and runs with fixed markers.

    The vendored chart library (tens of KB of minified code, identical in every report) becomes a
    marker naming the file, so goldens stay reviewable; its CSP hash still pins the exact bytes.
    """
    assets = page_assets()
    for name, body in [(s.name, s.body) for s in assets.scripts] + list(zip(STYLE_FILES, assets.styles)):
        if name.startswith("vendor/"):
            text = text.replace(str(body), f"/* {name} inlined here */")
    text = text.replace(str(SAMPLE_RUNS), "SAMPLE_RUNS")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\+00:00|Z)", "GENERATED_AT", text)
    text = text.replace(f"forensics {__version__}", "forensics VERSION")
    return re.sub(r'("version": )"[^"]+"', r'\1"VERSION"', text)


@pytest.mark.parametrize("extension", sorted(RENDERERS))
@pytest.mark.parametrize("name", RUNS)
def test_report_matches_golden(name, extension):
    report = analyze(SAMPLE_RUNS / name, command=f"forensics analyze sample_runs/{name}")
    actual = scrub(RENDERERS[extension](report))
    expected_path = GOLDEN / f"{name}.{extension}"
    if os.environ.get("FORENSICS_UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        expected_path.write_text(actual, encoding="utf-8")
        return
    expected = expected_path.read_text(encoding="utf-8") if expected_path.exists() else None
    if actual != expected:
        ACTUAL.mkdir(exist_ok=True)
        (ACTUAL / expected_path.name).write_text(actual, encoding="utf-8")
        pytest.fail(f"{expected_path.name} differs from the golden copy; actual saved to {ACTUAL / expected_path.name}. "
                    "If the change is intended: FORENSICS_UPDATE_GOLDEN=1 .venv/bin/python -m pytest "
                    "tests/test_golden_reports.py")
