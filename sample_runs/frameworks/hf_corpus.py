"""Generate the framework corpus: real `transformers.Trainer` runs and hand-written PyTorch loops in other
people's styles, each with one failure injected or a healthy twin, and their measured labels in CORPUS.json.

    .venv/bin/python sample_runs/frameworks/hf_corpus.py --out sample_runs/framework_corpus/hf [--only NAME ...]

Everything runs on CPU, offline (HF_HUB_OFFLINE=1), seeded, one thread; every process lifetime of a run is a
forked child with its own pid (a restart writes a new event file). Labels are measured from the logged series
(see frameworks_common_hf's docstring for the rules), never typed in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import frameworks_common_hf as common  # noqa: E402
import plain_labels  # noqa: E402
import plain_loop  # noqa: E402
from plain_cases import CASES  # noqa: E402
from plain_cases_more import CASES_MORE  # noqa: E402

COMMAND = ".venv/bin/python sample_runs/frameworks/hf_corpus.py --out sample_runs/framework_corpus/hf"
CASE_LIMIT_BYTES = 300_000
CORPUS_LIMIT_BYTES = 8_000_000
PLAIN = {case.name: case for case in [*CASES, *CASES_MORE]}
CONVENTIONS = {
    "step": "the step as the run logs it: TensorBoard event step, the JSONL/CSV 'step', the kv/free-text counter, the "
            "tqdm counter (1-based), HF Trainer's global_step (the LR logged at step s is the one 0-based step s-1 used)",
    "departure": "a logged LR more than 10% away from the correctly built reference scheduler, replayed in the generator",
    "grad_spike": "a grad norm > 10x the median of the previous 50 finite values",
    "plateau": "first step whose 50-point mean loss is within 5% of the last 50 points' mean",
    "lr_collapse": "first step whose LR is <= 1e-4 of the peak so far",
    "lr_runaway": "first step whose LR is >= 10x the first logged LR",
    "loss_divergence": "step of the smallest 10-point running mean loss before the sustained rise",
    "resume": "first step logged by the second process",
    "tolerance_steps": "the rule's own slack plus a few logging intervals of the source carrying the series",
}


def write_config(run_dir: Path, config: tuple | None) -> None:
    if config is None:
        return
    path = run_dir / config[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(config[1], indent=2) + "\n")
    else:
        import yaml
        path.write_text(yaml.safe_dump(config[1], sort_keys=False))


def generate_plain(name: str, run_dir: Path) -> dict:
    case = PLAIN[name]
    write_config(run_dir, case.config)
    lifetimes = plain_loop.run(case.recipe, run_dir)
    truth = {"healthy": case.healthy, "description": case.description, "framework": "plain",
             "logger": plain_labels.logger_name(case.recipe), "intent": "stated" if case.config else "none",
             "expected_codes": [plain_labels.measure(code, case.recipe, lifetimes, run_dir) for code in case.expected],
             "allowed_codes": list(case.allowed), "cli_schedule": case.cli_schedule}
    if case.healthy:
        truth["measured"] = plain_labels.check_healthy(case.recipe, lifetimes)
    return truth


def generators() -> dict:
    import hf_cases
    import hf_labels
    table = {name: generate_plain for name in PLAIN}
    table.update({name: hf_labels.generate for name in hf_cases.CASES})
    return table


def _write_manifest(path: Path, manifest: dict) -> None:
    manifest = {"generator": COMMAND, "version": 1, "conventions": CONVENTIONS,
                "cases": dict(sorted(manifest["cases"].items()))}
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", help="regenerate only these cases (the others keep their labels)")
    parser.add_argument("--keep-going", action="store_true", help="report a failing case and go on (development)")
    options = parser.parse_args()
    torch.set_num_threads(1)
    table = generators()
    names = options.only or sorted(table)
    options.out.mkdir(parents=True, exist_ok=True)
    manifest_path = options.out / "CORPUS.json"
    manifest = json.loads(manifest_path.read_text()) if options.only and manifest_path.exists() else {"cases": {}}
    if not options.only:
        for stale in options.out.iterdir():
            if stale.is_dir() and stale.name not in table:
                shutil.rmtree(stale)
    for name in names:
        run_dir = options.out / name
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        started = time.perf_counter()
        try:
            manifest["cases"][name] = table[name](name, run_dir)
        except Exception as error:  # noqa: BLE001 - only with --keep-going
            if not options.keep_going:
                raise
            print(f"[frameworks] FAILED {name}: {error!r}", file=sys.stderr)
            continue
        size = folder_bytes(run_dir)
        common.require(size < CASE_LIMIT_BYTES, f"{name}: {size} bytes")
        print(f"[frameworks] {name}: {time.perf_counter() - started:.1f}s {size // 1000} KB", file=sys.stderr)
        _write_manifest(manifest_path, manifest)  # after every case: an interrupted run keeps what it measured
    _write_manifest(manifest_path, manifest)
    total = folder_bytes(options.out)
    common.require(total < CORPUS_LIMIT_BYTES, f"corpus is {total} bytes")


if __name__ == "__main__":
    main()
