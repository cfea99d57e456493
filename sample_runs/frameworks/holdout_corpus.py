"""Generate the hold-out framework corpus (written blind to the analyzer; labels measured from each run).

    .venv/bin/python sample_runs/frameworks/holdout_corpus.py --out sample_runs/framework_corpus/holdout
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import holdout_common  # noqa: E402,F401 - sets offline env and threads first

CASE_LIMIT = 300 * 1024
FOLDER_LIMIT = 8 * 1024 * 1024
MODULES = ["holdout_plain", "holdout_resume", "holdout_sched", "holdout_timm", "holdout_hf", "holdout_pl"]


def all_cases():
    import importlib
    cases = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        cases.update(mod.CASES)
    return cases


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--only", nargs="*", help="generate only these cases (CORPUS.json keeps the others)")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    corpus_path = out / "CORPUS.json"
    corpus = {"generator": "sample_runs/frameworks/holdout_corpus.py --out sample_runs/framework_corpus/holdout",
              "cases": {}}
    if args.only and corpus_path.exists():
        corpus = json.loads(corpus_path.read_text())
    cases = all_cases()
    for name, fn in cases.items():
        if args.only and name not in args.only:
            continue
        run = out / name
        if run.exists():
            shutil.rmtree(run)
        run.mkdir(parents=True)
        t = time.time()
        meta = fn(run)
        n = size(run)
        if n > CASE_LIMIT:
            raise SystemExit(f"{name}: {n} bytes, over the {CASE_LIMIT} limit")
        corpus["cases"][name] = meta
        codes = ",".join(e["code"] + "@" + str(e["onset_step"]) for e in meta["expected_codes"]) or "healthy"
        print(f"{name:45s} {codes:40s} {n / 1024:6.0f} KB {time.time() - t:5.1f} s", flush=True)
    corpus["cases"] = {k: corpus["cases"][k] for k in cases if k in corpus["cases"]}
    corpus_path.write_text(json.dumps(corpus, indent=2) + "\n")
    total = size(out)
    if total > FOLDER_LIMIT:
        raise SystemExit(f"corpus folder {total} bytes, over {FOLDER_LIMIT}")
    print(f"{len(corpus['cases'])} cases, {total / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
