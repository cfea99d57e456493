"""A nightly sweep as a platform team runs it: every folder accounted for, the second night incremental,
the third diffed against the first, JUnit for the CI's test reporter."""

from __future__ import annotations

import json
import math
import os
import shutil
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from typer.testing import CliRunner

from forensics.cli.main import app
from forensics.ingest.discovery import find_runs, looks_like_training_log

from conftest import REPO, SAMPLE_RUNS
from test_read_only import _fingerprint

runner = CliRunner()
SAMPLES = ("healthy_onecycle", "nan_divergence", "stuck_lr_onecycle_per_epoch", "resume_scheduler_reset",
           "resume_start_epoch_reset", "lr_mismatch_config_lr")
GENERATED = ("generated/cosine_a", "generated/cosine_b", "generated/nan_stdout")
NOT_RUNS = {"docs": "README.txt", "env": "requirements.txt", "configs": "base.yaml", "empty": None}


def write_log_run(run_dir, steps=300, nan_from=None, file_name="train.log", seed=0):
    """A stdout log with a cosine LR and a falling loss; NaN from `nan_from` on when given."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for step in range(steps):
        lr = 0.05 * (1 + math.cos(math.pi * step / steps))
        loss = math.nan if nan_from is not None and step >= nan_from else 2.3 * math.exp(-step / 100) + 0.2 + seed / 1000
        lines.append(f"step {step} loss {loss:.4f} lr {lr:.6e}\n")
    (run_dir / file_name).write_text("".join(lines))


def build_root(root):
    """Sample runs, generated log-only runs (one only a stdout.txt that goes NaN), and folders that are no run."""
    for sample in SAMPLES:
        shutil.copytree(SAMPLE_RUNS / sample, root / sample)
    write_log_run(root / GENERATED[0])
    write_log_run(root / GENERATED[1], seed=1)
    write_log_run(root / GENERATED[2], steps=120, nan_from=60, file_name="stdout.txt")
    (root / "docs").mkdir()
    (root / "docs" / "README.txt").write_text("# How we train\n\nStart with lr 0.1; if the loss is unstable, "
                                              "lower it.\nSee the wiki for the cluster.\n")
    (root / "env").mkdir()
    (root / "env" / "requirements.txt").write_text("torch==2.3.0\nnumpy>=1.24\ntensorboard\n")
    (root / "configs").mkdir()
    (root / "configs" / "base.yaml").write_text("optimizer: adamw\nlr: 0.001\n")
    (root / "empty").mkdir()


def _index(out):
    return json.loads((out / "index.json").read_text())


def _schema():
    return json.loads((REPO / "docs" / "sweep.schema.json").read_text())


@pytest.fixture(scope="module")
def nights(tmp_path_factory):
    """Night 1 into OUT; night 2 unchanged into OUT; night 3 with one run broken, one removed, one added,
    against a copy of night 1's output."""
    base = tmp_path_factory.mktemp("nightly")
    root, out = base / "runs", base / "out"
    build_root(root)
    before = _fingerprint(root)
    first = runner.invoke(app, ["sweep", str(root), "-o", str(out), "-f", "html,json,md", "-j", "2",
                                "--junit", str(base / "night1.xml"), "--fail-on", "error"])
    night1 = _index(out)
    report_times = {path.name: path.stat().st_mtime_ns for path in out.iterdir() if path.name != "index.json"}
    second = runner.invoke(app, ["sweep", str(root), "-o", str(out), "-f", "html,json,md", "-j", "2"])
    night2 = _index(out)
    times_after_night2 = {name: (out / name).stat().st_mtime_ns for name in report_times}
    shutil.copytree(out, base / "night1_out")
    unchanged_after_night2 = _fingerprint(root) == before
    write_log_run(root / GENERATED[0], nan_from=150)          # newly broken
    shutil.rmtree(root / "resume_start_epoch_reset")           # gone
    write_log_run(root / "generated" / "cosine_c", seed=2)     # new
    third = runner.invoke(app, ["sweep", str(root), "-o", str(out), "-f", "html,json,md", "-j", "2",
                                "--baseline", str(base / "night1_out"), "--fail-on", "new-error",
                                "--junit", str(base / "night3.xml")])
    return {"base": base, "root": root, "out": out, "runs": [first, second, third], "night1": night1,
            "night2": night2, "night3": _index(out), "report_times": report_times, "times_after_night2": times_after_night2,
            "unchanged": unchanged_after_night2}


def test_a_stdout_txt_log_is_a_run_and_a_readme_or_requirements_file_is_not(tmp_path):
    write_log_run(tmp_path / "nan_stdout", steps=80, nan_from=40, file_name="stdout.txt")
    write_log_run(tmp_path / "job_out", steps=80, file_name="slurm-1234.out")
    (tmp_path / "docs").mkdir()
    # Prose that mentions an LR and a loss on several lines is still prose.
    (tmp_path / "docs" / "README.txt").write_text("Use lr 0.1 for the baseline.\nWith lr 0.01 it is slower.\n"
                                                  "We saw lr 0.3 diverge.\n" + "Some words about the data.\n" * 20)
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "requirements.txt").write_text("torch==2.3.0\nnumpy>=1.24\n")
    assert looks_like_training_log(tmp_path / "nan_stdout" / "stdout.txt")
    assert not looks_like_training_log(tmp_path / "docs" / "README.txt")
    assert not looks_like_training_log(tmp_path / "env" / "requirements.txt")
    assert [run.name for run in find_runs(tmp_path).runs] == ["job_out", "nan_stdout"]


def test_night_one_lists_every_run_and_every_folder_it_did_not_take(nights):
    result, index = nights["runs"][0], nights["night1"]
    assert result.exit_code == 1, result.output   # nan_divergence and the NaN stdout run fail the gate
    jsonschema.validate(index, _schema())
    runs = {run["path"]: run for run in index["runs"]}
    assert set(runs) == set(SAMPLES) | set(GENERATED)
    assert runs["generated/nan_stdout"]["status"] == "failed"
    assert "nan_onset" in runs["generated/nan_stdout"]["finding_codes"]
    assert all(run["reused"] is False for run in index["runs"]) and index["reused"] == 0
    skipped = {folder["path"]: folder for folder in index["skipped"]}
    assert set(skipped) == set(NOT_RUNS)
    assert "README.txt" in skipped["docs"]["reason"] and "no log format" in skipped["docs"]["reason"]
    assert "requirements.txt" in skipped["env"]["reason"]
    assert "configs alone do not make a run" in skipped["configs"]["reason"]
    assert skipped["empty"]["files"] == 0 and "empty" in skipped["empty"]["reason"]
    md = (nights["out"] / "index.md").read_text()
    page = (nights["out"] / "index.html").read_text()
    for folder in NOT_RUNS:
        assert f"` {folder} `" in md and f"<code>{folder}</code>" in page
    assert "Folders not taken as runs" in md and "Folders not taken as runs" in page


def test_night_two_reanalyses_nothing_and_says_so(nights):
    result, index = nights["runs"][1], nights["night2"]
    assert result.exit_code == 0, result.output
    jsonschema.validate(index, _schema())
    assert index["reused"] == len(index["runs"]) == len(SAMPLES) + len(GENERATED)
    assert all(run["reused"] for run in index["runs"])
    # Reused means not rewritten: every per-run report kept its modification time.
    for name, mtime in nights["report_times"].items():
        if name.endswith((".html", ".md", ".json")) and not name.startswith(("index.", ".")):
            assert nights["times_after_night2"][name] == mtime, name
    night1 = {run["path"]: run for run in nights["night1"]["runs"]}
    for run in index["runs"]:
        assert (run["status"], run["findings"]) == (night1[run["path"]]["status"], night1[run["path"]]["findings"])
    assert "(reused)" in (nights["out"] / "index.md").read_text()
    assert "unchanged since the last sweep" in result.stderr
    assert nights["unchanged"]  # the cache lives in OUT, never in the runs


def test_night_three_reanalyses_only_what_changed_and_shows_the_newly_broken_run(nights):
    result, index = nights["runs"][2], nights["night3"]
    jsonschema.validate(index, _schema())
    reused = {run["path"] for run in index["runs"] if run["reused"]}
    assert reused == (set(SAMPLES) | set(GENERATED)) - {"resume_start_epoch_reset", GENERATED[0]}
    diff = index["baseline"]
    assert diff["runs_added"] == ["generated/cosine_c"] and diff["runs_removed"] == ["resume_start_epoch_reset"]
    new = {(item["path"], item["code"]) for item in diff["new"]}
    assert (GENERATED[0], "nan_onset") in new
    assert all(item["path"] in (GENERATED[0], "generated/cosine_c") for item in diff["new"])
    onset = next(item for item in diff["new"] if item["code"] == "nan_onset")
    assert onset["severity"] == "error" and onset["step"] == 150
    persisting = {(item["path"], item["code"]) for item in diff["persisting"]}
    assert ("nan_divergence", "nan_onset") in persisting and ("generated/nan_stdout", "nan_onset") in persisting
    # --fail-on new-error: the regression gates, the old failures alone would not.
    assert result.exit_code == 1, result.output
    assert "1 run(s) added" in result.stderr and "new error nan_onset in generated/cosine_a" in result.stderr
    md = (nights["out"] / "index.md").read_text()
    page = (nights["out"] / "index.html").read_text()
    assert md.index("Against the baseline") < md.index("| run | verdict |")
    assert page.index('id="baseline"') < page.index("<th>verdict</th>")
    assert "` generated/cosine_a `" in md.split("## Runs")[0] and "nan_onset" in md.split("## Runs")[0]


def test_fail_on_new_error_passes_when_nothing_is_new(nights, tmp_path):
    base = nights["base"]
    shutil.copytree(nights["out"], tmp_path / "again")  # its cache: nothing to analyse again
    same = runner.invoke(app, ["sweep", str(nights["root"]), "-o", str(tmp_path / "again"), "-f", "json", "-q",
                               "--baseline", str(nights["out"] / "index.json"), "--fail-on", "new-error"])
    assert same.exit_code == 0, same.output
    assert _index(tmp_path / "again")["baseline"]["new"] == []
    gate = runner.invoke(app, ["sweep", str(nights["root"]), "-o", str(tmp_path / "again"), "-f", "json", "-q",
                               "--fail-on", "error"])
    assert gate.exit_code == 1
    missing = runner.invoke(app, ["sweep", str(nights["root"]), "-o", str(tmp_path / "x"), "--fail-on", "new-error"])
    assert missing.exit_code == 2 and "--baseline" in missing.stderr
    not_an_index = runner.invoke(app, ["sweep", str(nights["root"]), "-o", str(tmp_path / "y"),
                                       "--baseline", str(base / "runs")])
    assert not_an_index.exit_code == 2 and "index.json" in not_an_index.stderr and "Traceback" not in not_an_index.output


def test_junit_has_one_testcase_per_run_failed_exactly_when_the_gate_is_met(nights):
    tree = ET.parse(nights["base"] / "night1.xml")
    suite = tree.getroot().find("testsuite")
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    index = {run["path"]: run for run in nights["night1"]["runs"]}
    assert set(cases) == set(index) and suite.get("tests") == str(len(index))
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failed == {path for path, run in index.items() if "error" in {f["severity"] for f in run["findings"]}}
    assert suite.get("failures") == str(len(failed))
    case = cases["generated/nan_stdout"]
    assert case.find("failure").get("message") == index["generated/nan_stdout"]["headline"]
    assert f"report: {nights['out'] / index['generated/nan_stdout']['reports']['html']}" in case.find("system-out").text
    assert "not a run: docs" in suite.find("system-out").text
    # Night three gates on new errors only: the newly broken and the new run can fail, nothing else.
    night3 = ET.parse(nights["base"] / "night3.xml").getroot().find("testsuite")
    failed3 = {case.get("name") for case in night3.findall("testcase") if case.find("failure") is not None}
    assert failed3 == {GENERATED[0]}
    assert len(night3.findall("testcase")) == len(nights["night3"]["runs"])


def test_a_run_still_being_written_is_reanalysed_up_to_its_last_complete_record(tmp_path):
    root = tmp_path / "runs"
    write_log_run(root / "live", steps=200)
    first = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json", "-q"])
    assert first.exit_code == 0, first.output
    with open(root / "live" / "train.log", "a") as log:  # the trainer wrote more, the last line half-way
        log.write("".join(f"step {step} loss nan lr 1.0e-02\n" for step in range(200, 260)) + "step 260 lo")
    os.utime(root / "live" / "train.log")
    second = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json", "-q"])
    assert second.exit_code == 0, second.output
    run = _index(tmp_path / "out")["runs"][0]
    assert run["reused"] is False and run["status"] == "failed"
    onset = next(item for item in run["findings"] if item["code"] == "nan_onset")
    assert onset["step"] == 200 and onset["end_step"] == 259
