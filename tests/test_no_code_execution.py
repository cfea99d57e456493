"""Nothing in a run dir is ever executed: a checkpoint, a training_args.bin and a YAML config that
would each create a marker file (or run a shell command) under a naive loader sit in a real run;
`forensics analyze` reports them, runs none of them, and still analyses the rest of the run."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import torch
from typer.testing import CliRunner

from forensics.cli.main import app

from conftest import SAMPLE_RUNS


class RunsOnLoad:
    """Pickles to a call with a side effect: what a hostile checkpoint carries."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_malicious_checkpoint_training_args_and_yaml_never_run(tmp_path):
    run = tmp_path / "nan_divergence"
    shutil.copytree(SAMPLE_RUNS / "nan_divergence", run)
    markers = {name: tmp_path / f"pwned-{name}" for name in ("ckpt", "ckpt-open", "args", "yaml")}
    torch.save({"model": {"w": torch.ones(2)}, "global_step": 5,
                "payload": RunsOnLoad(os.system, f"touch {markers['ckpt']}"),
                "also": RunsOnLoad(open, str(markers["ckpt-open"]), "w")}, run / "checkpoints" / "evil.pt")
    (run / "training_args.bin").write_bytes(pickle.dumps(RunsOnLoad(os.system, f"touch {markers['args']}")))
    (run / "hparams.yaml").write_text(f"lr: 0.1\nhook: !!python/object/apply:os.system ['touch {markers['yaml']}']\n")
    report_path = tmp_path / "report.json"

    result = CliRunner().invoke(app, ["analyze", str(run), "-f", "json", "-o", str(report_path), "-q"])

    assert result.exit_code == 0, result.output
    assert not any(marker.exists() for marker in markers.values())
    report = json.loads(report_path.read_text())
    problems = {(problem["path"], problem["code"]) for problem in report["input_problems"]}
    assert ("checkpoints/evil.pt", "checkpoint_unsafe") in problems
    assert ("hparams.yaml", "config_unsafe_tag") in problems
    sources = {source["path"]: source for source in report["sources"]}
    assert sources["checkpoints/evil.pt"]["status"] == "failed"
    assert "training_args.bin" in sources and "hparams.yaml" in sources
    # the rest of the run is still analysed: the NaN onset from the event file and log is found
    truth = json.loads((SAMPLE_RUNS / "MANIFEST.json").read_text())["nan_divergence"]
    onsets = [finding for finding in report["findings"] if finding["code"] == "nan_onset"]
    assert onsets and onsets[0]["step"] == truth["first_nonfinite_loss_step"]
    good_checkpoints = [path for path, source in sources.items()
                        if path.startswith("checkpoints/") and path != "checkpoints/evil.pt"]
    assert good_checkpoints and all(sources[path]["status"] == "read" for path in good_checkpoints)
