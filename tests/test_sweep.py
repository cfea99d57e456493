"""`forensics sweep`: every run under a root analysed as `analyze` would alone, an index, and the root untouched."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from forensics.analyze import analyze
from forensics.cli.main import app
from forensics.sweep import SCHEMA

from conftest import SAMPLE_RUNS
from test_read_only import _fingerprint

runner = CliRunner()
HOSTILE = "bad<script>alert(1)<"
RUNS = {"healthy_onecycle": "healthy_onecycle", "nan_divergence": "nan_divergence",
        "group/stuck_lr_onecycle_per_epoch": "stuck_lr_onecycle_per_epoch",
        "resume_scheduler_reset": "resume_scheduler_reset"}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A root of copied sample runs (one nested a level deeper) and a hostile run, swept once with --jobs 1."""
    base = tmp_path_factory.mktemp("sweep")
    root = base / "root"
    for path, sample in RUNS.items():
        shutil.copytree(SAMPLE_RUNS / sample, root / path)
    (root / HOSTILE).mkdir()
    (root / HOSTILE / "model.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint \x00\xff" * 50)
    before = _fingerprint(root)
    result = runner.invoke(app, ["sweep", str(root), "-o", str(base / "out"), "-f", "html,json,md"])
    return base, root, before, result


def _index(out_dir):
    return json.loads((out_dir / "index.json").read_text())


def test_index_lists_every_run_with_the_verdict_analyze_gives_alone(swept):
    base, root, _, result = swept
    assert result.exit_code == 0, result.output
    index = _index(base / "out")
    assert index["schema"] == SCHEMA == "forensics.sweep/1"
    runs = {run["path"]: run for run in index["runs"]}
    assert set(runs) == set(RUNS) | {HOSTILE}
    for path, sample in RUNS.items():
        alone = analyze(SAMPLE_RUNS / sample)
        assert runs[path]["status"] == alone.verdict.status, path
        assert runs[path]["finding_codes"] == [finding.code for finding in alone.findings], path
        for name in ("html", "json", "md"):
            assert (base / "out" / runs[path]["reports"][name]).is_file()
    assert runs["healthy_onecycle"]["status"] == "healthy"
    assert runs["nan_divergence"]["status"] == "failed" and "nan_onset" in runs["nan_divergence"]["finding_codes"]
    assert runs["group/stuck_lr_onecycle_per_epoch"]["reports"]["json"] == "group__stuck_lr_onecycle_per_epoch.json"
    report = json.loads((base / "out" / runs["nan_divergence"]["reports"]["json"]).read_text())
    assert report["schema"] == "forensics.report/1" and report["verdict"]["status"] == "failed"
    # the terminal summary: one line per run, then the totals
    assert "nan_divergence" in result.stderr and "FAILED" in result.stderr and "5 run(s)" in result.stderr


def test_index_validates_against_its_published_schema(swept):
    import jsonschema

    from conftest import REPO

    base, _, _, _ = swept
    schema = json.loads((REPO / "docs" / "sweep.schema.json").read_text())
    jsonschema.validate(_index(base / "out"), schema)


def test_hostile_run_is_an_entry_with_its_input_problems(swept):
    base, _, _, _ = swept
    hostile = next(run for run in _index(base / "out")["runs"] if run["path"] == HOSTILE)
    assert hostile["status"] == "inconclusive"
    assert hostile["input_problems"] >= 1 and "checkpoint_unreadable" in hostile["input_problem_codes"]


def test_the_root_is_unchanged_and_the_index_escapes_run_names(swept):
    base, root, before, _ = swept
    assert _fingerprint(root) == before
    page = (base / "out" / "index.html").read_text()
    assert "<script" not in page
    assert "bad&lt;script&gt;alert(1)&lt;" in page
    assert "| ` bad<script>alert(1)< ` |" in (base / "out" / "index.md").read_text()


def test_jobs_2_gives_the_same_index(swept):
    base, root, _, _ = swept
    result = runner.invoke(app, ["sweep", str(root), "-o", str(base / "out2"), "-f", "html,json,md", "--jobs", "2",
                                 "-q"])
    assert result.exit_code == 0, result.output

    def timeless(index):
        for key in ("generated_at", "command"):
            index.pop(key)
        for run in index["runs"]:
            run.pop("seconds")
        return index
    assert timeless(_index(base / "out2")) == timeless(_index(base / "out"))


def test_fail_on_error_exits_1_only_when_asked(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SAMPLE_RUNS / "nan_divergence", root / "nan_divergence")
    result = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json", "--fail-on", "error"])
    assert result.exit_code == 1, result.output
    assert _index(tmp_path / "out")["runs"][0]["status"] == "failed"


def test_a_root_that_is_itself_a_run_is_one_run(tmp_path):
    root = tmp_path / "healthy_onecycle"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", root)
    result = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json", "--fail-on", "error"])
    assert result.exit_code == 0, result.output
    runs = _index(tmp_path / "out")["runs"]
    assert [(run["path"], run["status"], run["reports"]) for run in runs] == [
        (".", "healthy", {"json": "healthy_onecycle.json"})]


def test_out_dir_inside_root_is_refused_and_nothing_written(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", root / "run")
    before = _fingerprint(root)
    for out_dir in (root / "reports", root / "run" / "reports", root):
        result = runner.invoke(app, ["sweep", str(root), "-o", str(out_dir)])
        assert result.exit_code == 2, result.output
        assert "refusing to write inside the sweep root" in result.stderr and "Traceback" not in result.output
    assert _fingerprint(root) == before


def test_missing_root_and_empty_root_exit_2(tmp_path):
    missing = tmp_path / "no_such_root"
    result = runner.invoke(app, ["sweep", str(missing), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and str(missing) in result.stderr
    (tmp_path / "empty" / "configs").mkdir(parents=True)
    (tmp_path / "empty" / "configs" / "base.yaml").write_text("lr: 0.1\n")
    result = runner.invoke(app, ["sweep", str(tmp_path / "empty"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "no training runs found" in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_discovery_never_follows_a_link_loop(tmp_path):
    from forensics.ingest.discovery import find_runs

    shutil.copytree(SAMPLE_RUNS / "lr_mismatch_config_lr", tmp_path / "root" / "a" / "run")
    (tmp_path / "root" / "a" / "loop").symlink_to(tmp_path / "root")
    found = find_runs(tmp_path / "root")
    assert [path.name for path in found.runs] == ["run"]
    assert [problem.code for problem in found.problems] == ["symlink_loop"]


def test_a_run_whose_artifacts_sit_in_standard_subfolders_is_one_run(tmp_path):
    from forensics.ingest.discovery import find_runs

    root = tmp_path / "root"
    run = root / "team" / "exp7"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle" / "tb", run / "tb")
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle" / "checkpoints", run / "checkpoints")
    assert find_runs(root).runs == [run.resolve()]


def _log_only_run(run_dir):
    """A stdout log with a cosine LR and a falling loss, and no file that states the schedule."""
    import math

    run_dir.mkdir(parents=True)
    lr = [0.05 * (1 + math.cos(math.pi * step / 300)) for step in range(300)]
    run_dir.joinpath("train.log").write_text("".join(f"step {step} loss {2.3 * math.exp(-step / 100) + 0.2:.4f} "
                                                     f"lr {lr[step]:.6e}\n" for step in range(300)))


def test_a_limited_run_shows_what_was_not_checked_in_every_index_format(tmp_path):
    import jsonschema

    from conftest import REPO

    root = tmp_path / "root"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", root / "healthy_onecycle")
    _log_only_run(root / "log_only")
    result = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "out"), "-f", "json,md,html"])
    assert result.exit_code == 0, result.output
    index = _index(tmp_path / "out")
    jsonschema.validate(index, json.loads((REPO / "docs" / "sweep.schema.json").read_text()))
    runs = {run["path"]: run for run in index["runs"]}
    limited, healthy = runs["log_only"], runs["healthy_onecycle"]
    assert limited["status"] == "limited" and index["totals"]["limited"] == 1
    assert "stated_schedule" in limited["missing_inputs"] and limited["unchecked_codes"]
    assert limited["not_checked"].startswith(f"{len(limited['unchecked_codes'])} of {limited['checks_total']} checks")
    assert "--schedule" in limited["not_checked"]
    assert healthy["status"] == "healthy" and healthy["not_checked"] is None and healthy["unchecked_codes"] == []
    # Worst first: the limited run is listed above the healthy one, with its gap in the "not checked" column.
    md = (tmp_path / "out" / "index.md").read_text()
    assert md.index("log_only") < md.index("healthy_onecycle") and "**LIMITED**" in md and "\\`--schedule\\`" in md
    page = (tmp_path / "out" / "index.html").read_text()
    assert '<td class="status limited">limited</td>' in page and "a stated LR schedule" in page
    assert "LIMITED" in result.stderr
