"""`--executor dask`: the same sweep on a real Dask LocalCluster of 2 worker processes gives the same index."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
from typer.testing import CliRunner

from forensics.cli.main import app

from conftest import REPO, SAMPLE_RUNS
from test_sweep_nightly import write_log_run

pytest.importorskip("distributed")
runner = CliRunner()
HOSTILE = "broken_checkpoint"


def _comparable(index):
    """What must not depend on where the analyses ran."""
    return sorted((run["path"], run["status"], run["headline"], run["findings"], run["input_problem_codes"],
                   run["reports"]) for run in index["runs"])


def test_dask_local_cluster_gives_the_verdicts_of_the_process_pool(tmp_path):
    root = tmp_path / "runs"
    for sample in ("healthy_onecycle", "nan_divergence", "stuck_lr_onecycle_per_epoch"):
        shutil.copytree(SAMPLE_RUNS / sample, root / sample)
    write_log_run(root / "logs_only" / "nan", steps=120, nan_from=70, file_name="stdout.txt")
    (root / HOSTILE).mkdir()
    (root / HOSTILE / "model.pt").write_bytes(b"PK\x03\x04 not a checkpoint \x00\xff" * 40)
    pool = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "pool"), "-f", "json", "-j", "2", "-q"])
    assert pool.exit_code == 0, pool.output
    dask = runner.invoke(app, ["sweep", str(root), "-o", str(tmp_path / "dask"), "-f", "json,md", "-j", "2",
                               "--executor", "dask", "--junit", str(tmp_path / "dask.xml")])
    assert dask.exit_code == 0, dask.output
    by_pool = json.loads((tmp_path / "pool" / "index.json").read_text())
    by_dask = json.loads((tmp_path / "dask" / "index.json").read_text())
    jsonschema.validate(by_dask, json.loads((REPO / "docs" / "sweep.schema.json").read_text()))
    assert by_dask["executor"] == "dask" and by_pool["executor"] == "processes"
    for run in by_dask["runs"]:  # the md report is extra; json must match the pool's
        run["reports"].pop("md")
    assert _comparable(by_dask) == _comparable(by_pool)
    statuses = {run["path"]: run["status"] for run in by_dask["runs"]}
    assert statuses["nan_divergence"] == "failed" and statuses["healthy_onecycle"] == "healthy"
    assert statuses["logs_only/nan"] == "failed" and statuses[HOSTILE] == "inconclusive"
    # Workers sent back report data; the client wrote the reports, byte for byte what the pool wrote.
    for run in by_pool["runs"]:
        pool_report = json.loads((tmp_path / "pool" / run["reports"]["json"]).read_text())
        dask_report = json.loads((tmp_path / "dask" / run["reports"]["json"]).read_text())
        for report in (pool_report, dask_report):
            report["provenance"].pop("generated_at", None)
            report["provenance"].pop("command", None)
        assert dask_report["findings"] == pool_report["findings"], run["path"]
        assert dask_report["verdict"] == pool_report["verdict"], run["path"]
