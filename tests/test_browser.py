"""Reports in a real browser: headless Chromium (the Debian package) driven by selenium + chromedriver.

Checks what only a browser can: the CSP lets our inline scripts run (a blocked script is a console
error), the page makes no network request, every chart draws, markup from the run stays text, and
the page still shows findings and tables with JavaScript off. Skipped when chromium or chromedriver
is absent (.ci/run installs both).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from forensics.analyze import analyze
from forensics.render import render_html

from conftest import SAMPLE_RUNS

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e .[test])")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(f"headless browser tests need {CHROMIUM} and {CHROMEDRIVER} "
                "(apt-get install chromium chromium-driver)", allow_module_level=True)

from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

RUNS = ["stuck_lr_onecycle_per_epoch", "nan_divergence", "resume_scheduler_reset", "healthy_onecycle"]
HOSTILE = "<img src=x onerror=alert(1)><script>window.__pwned=1</script>"
# A file name cannot hold "/", so the checkpoint carries the half of the attack a path can: it lands in
# the chart data islands (marker labels) and the SVG titles as well as in the tables.
HOSTILE_CHECKPOINT = "ckpt<img src=x onerror=window.__pwned=2>.pt"
HOSTILE_LOG = "stdout<svg onload=window.__pwned=3>.log"
HOSTILE_CONFIG_VALUE = "<img src=x onerror=window.__pwned=4>OneCycleLR"


def _driver(tmp_path_factory, javascript: bool):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-extensions", "--window-size=1280,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = _driver(tmp_path_factory, javascript=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def browser_without_js(tmp_path_factory):
    driver = _driver(tmp_path_factory, javascript=False)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """HTML reports of the sample runs and of a hostile run, written outside the runs."""
    out = tmp_path_factory.mktemp("reports")
    paths = {}
    for name in RUNS:
        paths[name] = out / f"{name}.html"
        paths[name].write_text(render_html(analyze(SAMPLE_RUNS / name)), encoding="utf-8")
    hostile = _hostile_run(tmp_path_factory.mktemp("hostile"))
    paths["hostile"] = out / "hostile.html"
    paths["hostile"].write_text(render_html(analyze(hostile)), encoding="utf-8")
    return paths


def _hostile_run(root: Path) -> Path:
    """A real SummaryWriter run whose tag names (and a log line) carry markup and script."""
    from torch.utils.tensorboard import SummaryWriter

    run = root / "hostile_run"
    writer = SummaryWriter(log_dir=str(run / "tb"))
    for step in range(60):
        writer.add_scalar(HOSTILE, float(step), step)
        writer.add_scalar("train/loss" + HOSTILE, float("nan") if step >= 40 else 1.0 / (step + 1), step)
        writer.add_scalar("train/lr", 1e-3, step)
    writer.close()
    import torch

    (run / "checkpoints").mkdir()
    torch.save({"global_step": 30, "epoch": 1, "model": {"w": torch.ones(2)}}, run / "checkpoints" / HOSTILE_CHECKPOINT)
    (run / "train.log").write_text(f"step 10 loss 0.5 {HOSTILE}\nTraceback (most recent call last):\n"
                                   f"  RuntimeError: {HOSTILE}\n", encoding="utf-8")
    (run / HOSTILE_LOG).write_text(f"step 20 loss 0.25 lr 0.001\nWARNING {HOSTILE}\n", encoding="utf-8")
    (run / "hparams.yaml").write_text(f"lr: 0.001\nlr_scheduler: {{name: '{HOSTILE_CONFIG_VALUE}', max_lr: 0.01}}\n"
                                      f"note: '{HOSTILE}'\n", encoding="utf-8")
    return run


def _open(driver, path: Path) -> list[str]:
    """Load `path` from a blank page; return the URLs the page itself requested (the document excluded)."""
    driver.get("about:blank")
    driver.get_log("performance")  # drain what the browser did before our page
    driver.get_log("browser")
    driver.get(path.as_uri())
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url != path.as_uri() and not url.startswith("chrome://"):
                requests.append(url)
    return requests


def _console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@pytest.mark.parametrize("name", RUNS)
def test_report_opens_offline_and_every_chart_draws(browser, reports, name):
    requests = _open(browser, reports[name])
    assert requests == [], f"the report requested {requests}"
    assert _console_errors(browser) == []
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert figures, "no chart in the report"
    for figure in figures:
        assert "enhanced" in figure.get_attribute("class"), f"{figure.get_attribute('id')} was not made interactive"
        painted = browser.execute_script("""
            const canvas = arguments[0].querySelector('canvas');
            if (!canvas || !canvas.width || !canvas.height) return 0;
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            let painted = 0;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) painted++;
            return painted;""", figure)
        assert painted > 500, f"{figure.get_attribute('id')}: canvas is empty"
    assert browser.find_element(By.CSS_SELECTOR, "svg.timeline rect.lane").is_displayed()
    report = analyze(SAMPLE_RUNS / name)
    cards = browser.find_elements(By.CSS_SELECTOR, "section.card.finding")
    assert [card.get_attribute("data-code") for card in cards] == [f.code for f in report.findings]


def test_hover_shows_step_and_value(browser, reports):
    _open(browser, reports["stuck_lr_onecycle_per_epoch"])
    legend = browser.execute_script("""
        const chart = document.querySelector('figure.chart').__chart;
        chart.setCursor({left: chart.bbox.width / (2 * devicePixelRatio), top: 20});
        return chart.root.querySelector('.u-legend').innerText;""")
    assert "step" in legend and any(ch.isdigit() for ch in legend.split("step", 1)[1]), legend


def test_markup_from_the_run_is_shown_as_text_and_never_runs(browser, reports):
    requests = _open(browser, reports["hostile"])
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - raises when no alert() ran
    assert browser.execute_script("return window.__pwned") is None
    assert requests == [], f"the hostile report requested {requests} (an injected <img> would)"
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    body = browser.find_element(By.TAG_NAME, "body").text
    assert HOSTILE in body and HOSTILE_CHECKPOINT in body and HOSTILE_LOG in body
    page = reports["hostile"].read_text(encoding="utf-8")
    for payload in (HOSTILE, HOSTILE_CHECKPOINT, HOSTILE_LOG, HOSTILE_CONFIG_VALUE):
        assert payload not in page  # only ever escaped, in markup and in the JSON islands alike
    labels = browser.execute_script("""return Array.from(document.querySelectorAll('script.chart-data'))
        .flatMap(island => JSON.parse(island.textContent).markers.map(marker => marker.label))""")
    assert any(HOSTILE_CHECKPOINT in label for label in labels)  # it reached the chart data, which stayed data
    assert _console_errors(browser) == []


@pytest.mark.parametrize("name", ["nan_divergence", "stuck_lr_onecycle_per_epoch"])
def test_without_javascript_findings_tables_and_static_charts_show(browser_without_js, reports, name):
    driver = browser_without_js
    _open(driver, reports[name])
    cards = driver.find_elements(By.CSS_SELECTOR, "section.card.finding")
    assert cards and all(card.is_displayed() for card in cards)
    assert driver.find_element(By.CSS_SELECTOR, "section.card.finding .fix").is_displayed()
    assert driver.find_element(By.CSS_SELECTOR, "table.evidence").is_displayed()
    assert driver.find_element(By.CSS_SELECTOR, "table.sources").is_displayed()
    assert driver.find_elements(By.CSS_SELECTOR, "figure.enhanced") == []
    static = driver.find_elements(By.CSS_SELECTOR, "figure.chart svg.static-chart")
    assert static and all(svg.is_displayed() and svg.size["height"] > 50 for svg in static)
    assert driver.find_elements(By.CSS_SELECTOR, "svg.static-chart polyline.line.actual")

