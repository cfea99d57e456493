"""The command line: exit codes, messages that name the bad path, and where reports go."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from forensics.cli.main import app

from conftest import SAMPLE_RUNS

runner = CliRunner()


def test_json_to_stdout_and_exit_zero_even_with_findings(tmp_path):
    result = runner.invoke(app, ["analyze", str(SAMPLE_RUNS / "nan_divergence"), "--format", "json", "-o", "-"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["schema"] == "forensics.report/1"
    assert "nan_onset" in [finding["code"] for finding in document["findings"]]


def test_default_report_goes_to_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["analyze", str(SAMPLE_RUNS / "healthy_onecycle")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "forensics-healthy_onecycle.html").is_file()
    assert "HEALTHY" in result.stderr


@pytest.mark.parametrize(("fail_on", "run", "expected"), [
    ("error", "nan_divergence", 1),
    ("warning", "nan_divergence", 1),
    ("error", "healthy_onecycle", 0),
])
def test_fail_on(tmp_path, fail_on, run, expected):
    result = runner.invoke(app, ["analyze", str(SAMPLE_RUNS / run), "-o", str(tmp_path / "r.json"), "-f", "json",
                                 "--fail-on", fail_on, "-q"])
    assert result.exit_code == expected, result.output


def test_missing_run_dir_is_one_line_exit_2(tmp_path):
    missing = tmp_path / "no_such_run"
    result = runner.invoke(app, ["analyze", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "Traceback" not in result.output


def test_refuses_to_write_inside_the_run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    result = runner.invoke(app, ["analyze", str(run), "-o", str(run / "report.html")])
    assert result.exit_code == 2
    assert "refusing to write inside the run directory" in result.stderr
    assert list(run.iterdir()) == []


def test_default_output_refused_when_cwd_is_the_run_dir(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    result = runner.invoke(app, ["analyze", "."])
    assert result.exit_code == 2
    assert list(run.iterdir()) == []


def test_empty_run_dir_is_inconclusive_not_an_error(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    result = runner.invoke(app, ["analyze", str(run), "-f", "json", "-o", "-"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["verdict"]["status"] == "inconclusive"
    assert {check["status"] for check in document["checks"]} == {"not_applicable"}


def test_checks_lists_and_explains_codes():
    listing = runner.invoke(app, ["checks"])
    assert listing.exit_code == 0 and "constant_lr" in listing.stdout and "nan_onset" in listing.stdout
    explained = runner.invoke(app, ["checks", "constant_lr"])
    assert explained.exit_code == 0 and "Fix" in explained.stdout and "scheduler.step()" in explained.stdout
    unknown = runner.invoke(app, ["checks", "no_such_code"])
    assert unknown.exit_code == 2 and "no_such_code" in unknown.stderr


def test_strict_fails_on_unreadable_inputs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "broken.pt").write_bytes(b"not a checkpoint at all")
    lenient = runner.invoke(app, ["analyze", str(run), "-f", "json", "-o", "-"])
    strict = runner.invoke(app, ["analyze", str(run), "-f", "json", "-o", "-", "--strict"])
    assert lenient.exit_code == 0 and strict.exit_code == 1
    assert "broken.pt" in lenient.stderr


def test_report_file_is_readable_by_others(tmp_path):
    import os
    import stat

    target = tmp_path / "r.md"
    old = os.umask(0o022)
    try:
        result = runner.invoke(app, ["analyze", str(SAMPLE_RUNS / "healthy_onecycle"), "-f", "md", "-o", str(target), "-q"])
    finally:
        os.umask(old)
    assert result.exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_follow_links_reads_files_outside_the_run(tmp_path):
    import os
    import shutil

    run = tmp_path / "run"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle" / "tb", run / "tb")
    os.symlink(SAMPLE_RUNS / "healthy_onecycle" / "checkpoints", run / "checkpoints")
    plain = json.loads(runner.invoke(app, ["analyze", str(run), "-f", "json", "-o", "-", "-q"]).stdout)
    assert plain["run"]["checkpoints"] == 0
    assert [p["code"] for p in plain["input_problems"]] == ["link_outside_run"]
    followed = json.loads(runner.invoke(app, ["analyze", str(run), "-f", "json", "-o", "-", "-q",
                                              "--follow-links"]).stdout)
    assert followed["run"]["checkpoints"] == 4


def test_terminal_summary_of_a_limited_run_names_the_missing_input_and_its_fix(tmp_path):
    run = tmp_path / "log_only"
    run.mkdir()
    (run / "train.log").write_text("".join(f"step {step} loss {2.0 / (1 + step / 50):.4f} lr {0.1 * 0.99 ** step:.6e}\n"
                                           for step in range(300)))
    result = runner.invoke(app, ["analyze", str(run), "-f", "json", "-o", str(tmp_path / "report.json")])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["verdict"]["status"] == "limited"
    assert "LIMITED" in result.stderr
    missing = [line for line in result.stderr.splitlines() if line.strip().startswith("missing")]
    assert missing and any("a stated LR schedule" in line and "--schedule" in line for line in missing), result.stderr
    assert "did not apply to this run: " in result.stderr and "resume_drift" in result.stderr
