"""The HTML page without a browser: inlined assets, the CSP that allows exactly them, escaped chart data,
and chart series that keep spikes, NaN runs and segment edges through downsampling."""

from __future__ import annotations

import base64
import hashlib
import html as html_text
import json
import re
import tomllib

import numpy as np

from forensics.analyze import analyze
from forensics.render import render_html
from forensics.render.assets import SCRIPT_FILES, json_island, page_assets
from forensics.render.environment import templates_dir
from forensics.report.charts import CHART_POINTS, reduce_series

from conftest import REPO, SAMPLE_RUNS


def test_every_inline_script_is_allowed_by_its_hash_and_nothing_else_is():
    html = render_html(analyze(SAMPLE_RUNS / "stuck_lr_onecycle_per_epoch"))
    csp = html_text.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1))
    bodies = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    assert len(bodies) == len(SCRIPT_FILES)
    for body in bodies:
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp and "unsafe-inline' " not in csp.split("script-src")[1]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the page must not reference anything remote"


def test_json_island_cannot_close_its_script_element():
    text = str(json_island({"label": "</script><script>alert(1)</script>", "x": "a & b > c", "s": "\u2028"}))
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text)["label"] == "</script><script>alert(1)</script>"


def test_vendored_uplot_ships_with_its_licence():
    vendor = templates_dir() / "vendor" / "uplot"
    assert {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE", "VERSION"} <= {p.name for p in vendor.iterdir()}
    assert "MIT License" in (vendor / "LICENSE").read_text()
    assert page_assets().uplot_version == (vendor / "VERSION").read_text().strip()
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["forensics.templates"]
    assert "vendor/**/*" in globs and "*.js" in globs


def test_downsampling_keeps_spikes_nan_runs_and_segment_edges():
    count = 200_000
    steps = np.arange(count)
    values = 1.0 + 0.01 * np.sin(steps / 50.0)
    values[123_457] = 50.0                 # one spike
    values[150_000:150_010] = np.nan       # a short NaN run
    values[-5:] = np.inf
    segments = np.where(steps < 77_777, 0, 1)
    series = reduce_series("loss", "loss", steps, values, segments)
    assert len(series.steps) <= CHART_POINTS + 50
    assert 123_457 in series.steps and 123_457 in series.spike_steps
    assert series.nonfinite_runs == ((150_000, 150_009), (199_995, 199_999)) and series.nonfinite_count == 15
    assert {77_776, 77_777} <= set(series.steps)   # the resume boundary is drawn where it is
    assert series.values[series.steps.index(150_000)] is None   # the line breaks at the NaN


def test_finding_cards_have_a_chart_zoomed_on_their_steps():
    report = analyze(SAMPLE_RUNS / "nan_divergence")
    html = render_html(report)
    onset = next(f for f in report.findings if f.code == "nan_onset")
    zoom = next(c for c in report.charts if c.scope == f"finding-{report.findings.index(onset) + 1}")
    assert zoom.metric == "loss" and zoom.window[0] < onset.step <= zoom.window[1]
    assert 'id="finding-1-chart"' in html


def test_the_checks_table_says_how_to_enable_each_check_that_lacked_an_input(tmp_path):
    run = tmp_path / "loss_only"
    run.mkdir()
    (run / "train.log").write_text("".join(f"step {step} loss {2.0 / (1 + step / 50):.4f}\n" for step in range(300)))
    report = analyze(run)
    assert report.verdict.status == "limited"
    page = render_html(report)
    checks = page[page.index("<h2>Checks</h2>"):]
    checks = checks[:checks.index("</table>")]
    row = next(line for line in checks.splitlines() if "<code>constant_lr</code>" in line)
    assert 'class="limits"' in row and "log the learning rate" in row
    resume = next(line for line in checks.splitlines() if "<code>resume_drift</code>" in line)
    assert "does not arise in this run" in resume and 'class="limits"' not in resume
    header = page[page.index("<header>"):page.index("</header>")]
    assert 'class="verdict limited"' in header and "a logged LR series" in header
