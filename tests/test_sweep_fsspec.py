"""Sweep roots and runs as fsspec URLs, on fsspec's memory and local filesystems."""

from __future__ import annotations

import json
import shutil
import uuid

import fsspec
import jsonschema
import pytest
from typer.testing import CliRunner

from forensics.analyze import analyze
from forensics.cli.main import app
from forensics.storage import analyze_location, is_url, local_run
from forensics.sweep import SweepTask
from forensics.sweep.cache import run_fingerprint
from forensics.sweep.worker import analyse_one

from conftest import REPO, SAMPLE_RUNS
from test_read_only import _fingerprint
from test_sweep_nightly import write_log_run

runner = CliRunner()


def _upload(local_dir, url):
    fs, path = fsspec.core.url_to_fs(url)
    fs.put(str(local_dir) + "/", path + "/", recursive=True)


@pytest.fixture
def memory_root(tmp_path):
    """A root on fsspec's memory filesystem: two sample runs, a stdout.txt-only run and a README folder."""
    staging = tmp_path / "staging"
    shutil.copytree(SAMPLE_RUNS / "nan_divergence", staging / "team" / "nan_divergence")
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", staging / "healthy_onecycle")
    write_log_run(staging / "team" / "stdout_only", steps=100, nan_from=50, file_name="stdout.txt")
    (staging / "docs").mkdir()
    (staging / "docs" / "README.txt").write_text("How to train: use lr 0.1.\n")
    url = f"memory://sweeps-{uuid.uuid4().hex}/runs"
    _upload(staging, url)
    yield url, staging
    fs, path = fsspec.core.url_to_fs(url)
    fs.rm(path.rsplit("/", 1)[0], recursive=True)


def test_is_url_tells_urls_from_paths():
    assert is_url("s3://bucket/runs") and is_url("memory://x") and is_url("simplecache::s3://b/r")
    assert not is_url("runs/exp1") and not is_url("/abs/path") and not is_url("C:\\runs")


def test_a_memory_root_is_swept_like_the_same_folder_on_disk(memory_root, tmp_path):
    url, staging = memory_root
    remote = runner.invoke(app, ["sweep", url, "-o", str(tmp_path / "remote"), "-f", "json", "-q"])
    local = runner.invoke(app, ["sweep", str(staging), "-o", str(tmp_path / "local"), "-f", "json", "-q"])
    assert remote.exit_code == 0 and local.exit_code == 0, remote.output + local.output
    remote_index = json.loads((tmp_path / "remote" / "index.json").read_text())
    local_index = json.loads((tmp_path / "local" / "index.json").read_text())
    jsonschema.validate(remote_index, json.loads((REPO / "docs" / "sweep.schema.json").read_text()))
    assert remote_index["root"] == url
    runs = {run["path"]: (run["status"], run["findings"]) for run in remote_index["runs"]}
    assert runs == {run["path"]: (run["status"], run["findings"]) for run in local_index["runs"]}
    assert set(runs) == {"team/nan_divergence", "healthy_onecycle", "team/stdout_only"}
    assert runs["team/stdout_only"][0] == "failed"
    assert [folder["path"] for folder in remote_index["skipped"]] == ["docs"]
    # The per-run report names the URL it was read from, not a temporary copy.
    report = json.loads((tmp_path / "remote" / "team__nan_divergence.json").read_text())
    assert report["run"]["path"] == f"{url}/team/nan_divergence"


def test_a_worker_reads_a_url_run_itself_and_sends_back_its_report(memory_root):
    url, staging = memory_root
    task = SweepTask(f"{url}/team/stdout_only", "team/stdout_only", "team__stdout_only", ("json",), "test", None, False)
    entry, texts = analyse_one(task)  # in this process, where the memory filesystem is visible
    alone = analyze(staging / "team" / "stdout_only")
    assert entry.status == alone.verdict.status == "failed"
    assert entry.finding_codes == tuple(finding.code for finding in alone.findings)
    assert json.loads(texts["json"])["run"]["path"] == f"{url}/team/stdout_only"


def test_fetched_copies_are_removed_and_the_remote_run_is_untouched(memory_root):
    url, _ = memory_root
    fs, path = fsspec.core.url_to_fs(url)
    before = sorted((name, info["size"]) for name, info in fs.find(path, detail=True).items())
    with local_run(f"{url}/healthy_onecycle") as folder:
        fetched = folder
        assert (folder / "tb").is_dir() and folder.name == "healthy_onecycle"
    assert not fetched.exists()
    assert sorted((name, info["size"]) for name, info in fs.find(path, detail=True).items()) == before


def test_remote_fingerprint_changes_when_a_file_grows(memory_root):
    url, _ = memory_root
    run = f"{url}/team/stdout_only"
    first = run_fingerprint(run, False)
    fs, path = fsspec.core.url_to_fs(run)
    fs.pipe(path + "/stdout.txt", fs.cat_file(path + "/stdout.txt") + b"step 100 loss nan lr 1e-2\n")
    assert run_fingerprint(run, False) != first and len(first) == 1


def test_file_urls_are_read_in_place(tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(SAMPLE_RUNS / "healthy_onecycle", root / "healthy_onecycle")
    before = _fingerprint(root)
    result = runner.invoke(app, ["sweep", f"file://{root}", "-o", str(tmp_path / "out"), "-f", "json", "-q"])
    assert result.exit_code == 0, result.output
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert [(run["path"], run["status"]) for run in index["runs"]] == [("healthy_onecycle", "healthy")]
    assert index["root"] == str(root.resolve())
    with local_run(f"file://{root}/healthy_onecycle") as folder:
        assert folder == root / "healthy_onecycle"  # no copy
    assert _fingerprint(root) == before
    refused = runner.invoke(app, ["sweep", f"file://{root}", "-o", str(root / "reports")])
    assert refused.exit_code == 2 and "refusing to write inside the sweep root" in refused.stderr


def test_analyze_takes_a_url(memory_root, tmp_path):
    url, staging = memory_root
    result = runner.invoke(app, ["analyze", f"{url}/team/nan_divergence", "-f", "json", "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    alone = analyze(staging / "team" / "nan_divergence")
    assert report["verdict"]["status"] == alone.verdict.status == "failed"
    assert report["run"]["path"] == f"{url}/team/nan_divergence" and report["run"]["name"] == "nan_divergence"
    assert analyze_location(f"{url}/team/nan_divergence").verdict.status == "failed"


def test_urls_that_cannot_be_read_are_one_line_errors(tmp_path):
    missing = runner.invoke(app, ["analyze", "memory://no-such-bucket/run", "-f", "json", "-o", str(tmp_path / "r")])
    assert missing.exit_code == 2 and "memory://no-such-bucket/run: no such folder" in missing.stderr
    root = runner.invoke(app, ["sweep", "memory://no-such-bucket/runs", "-o", str(tmp_path / "out")])
    assert root.exit_code == 2 and "no such folder" in root.stderr and "Traceback" not in root.output
    unknown = runner.invoke(app, ["analyze", "nosuchproto://bucket/run", "-f", "json", "-o", str(tmp_path / "r")])
    assert unknown.exit_code == 2 and "nosuchproto://bucket/run" in unknown.stderr
