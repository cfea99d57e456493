"""Score forensics against the labelled corpus: per case what was found, per code recall and false alarms.

Used by tests/test_detection.py, and by hand to refresh docs/detection.md:
    .venv/bin/python tests/detection.py --corpus /tmp/corpus --write-docs        # the generated corpus
    .venv/bin/python tests/detection.py --corpus hf --write-docs                 # a committed corpus by name
(the generated corpus is generated first if the folder has no CORPUS.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "detection.md"
SERIOUS = ("error", "warning")
# Corpus name -> committed folder (None: generated into a temporary folder by sample_runs/corpus.py).
CORPORA = {
    "generated": None,
    "hf": REPO / "sample_runs" / "framework_corpus" / "hf",
    "lightning": REPO / "sample_runs" / "framework_corpus" / "lightning",
}


@dataclass
class CaseResult:
    """What forensics said about one corpus case, scored against its ground truth."""

    name: str
    healthy: bool
    found: list[tuple[str, str, int | None]]             # (code, severity, step)
    missed: list[str] = field(default_factory=list)        # expected codes not found (or found at the wrong step)
    wrong_step: list[str] = field(default_factory=list)    # "code: found at X, expected Y±T"
    false_alarms: list[str] = field(default_factory=list)  # serious findings neither expected nor allowed


def score_case(name: str, truth: dict, findings: list) -> CaseResult:
    """Compare one report's findings with one case's ground truth."""
    found = [(f.code, f.severity, f.step) for f in findings]
    result = CaseResult(name, truth["healthy"], found)
    expected_codes = {item["code"] for item in truth["expected_codes"]}
    for item in truth["expected_codes"]:
        steps = [step for code, _, step in found if code == item["code"]]
        if not steps:
            result.missed.append(item["code"])
            continue
        tolerance = item.get("tolerance_steps", 0)
        if not any(step is not None and abs(step - item["onset_step"]) <= tolerance for step in steps):
            result.wrong_step.append(f"{item['code']}: found at {steps}, expected {item['onset_step']}±{tolerance}")
    allowed = expected_codes | set(truth.get("allowed_codes", []))
    result.false_alarms = [code for code, severity, _ in found if severity in SERIOUS and code not in allowed]
    return result


def load_manifest(corpus_dir: Path) -> dict:
    """A corpus folder's CORPUS.json."""
    return json.loads((Path(corpus_dir) / "CORPUS.json").read_text())


def evaluate(corpus_dir: Path) -> tuple[dict, list[CaseResult]]:
    """Analyse every case of a corpus and score it."""
    from forensics.analyze import analyze

    manifest = load_manifest(corpus_dir)
    results = [score_case(name, truth, analyze(corpus_dir / name, schedule=cli_options(truth)).findings)
               for name, truth in sorted(manifest["cases"].items())]
    return manifest, results


def cli_options(truth: dict):
    """The `--schedule` options a user would give for a case whose files state no schedule (else None)."""
    from forensics.schedule import schedule_options

    cli = truth.get("cli_schedule")
    if not cli:
        return None
    return schedule_options(cli["schedule"], cli.get("base_lr"), cli.get("steps_per_epoch"), cli.get("interval"))


def detection_table(manifest: dict, results: list[CaseResult]) -> str:
    """Markdown: per code, cases injected, found at the right step, false alarms (on any case)."""
    codes = sorted({item["code"] for truth in manifest["cases"].values() for item in truth["expected_codes"]})
    by_name = {result.name: result for result in results}
    lines = ["| code | injected cases | found at the right step | recall | false alarms |", "|---|---|---|---|---|"]
    for code in codes:
        cases = [name for name, truth in manifest["cases"].items()
                 if code in {item["code"] for item in truth["expected_codes"]}]
        right = [name for name in cases if code not in by_name[name].missed
                 and not any(entry.startswith(code + ":") for entry in by_name[name].wrong_step)]
        alarms = sum(result.false_alarms.count(code) for result in results)
        lines.append(f"| `{code}` | {len(cases)} | {len(right)} | {len(right) / len(cases):.0%} | {alarms} |")
    healthy = [result for result in results if result.healthy]
    noisy = [result.name for result in healthy if any(sev in SERIOUS for _, sev, _ in result.found)]
    lines += ["", f"Healthy twins: {len(healthy)}, with a warning or error finding: {len(noisy)}"
              + (f" ({', '.join(noisy)})" if noisy else "") + "."]
    return "\n".join(lines) + "\n"


def docs_section(text: str, corpus: str) -> str | None:
    """The table between a corpus's markers in docs/detection.md (None when it has none)."""
    start, end = f"<!-- detection-table:{corpus} -->\n", f"<!-- /detection-table:{corpus} -->"
    if start not in text or end not in text:
        return None
    return text[text.index(start) + len(start):text.index(end)]


def write_docs_section(corpus: str, table: str) -> None:
    """Replace a corpus's table in docs/detection.md."""
    text = DOCS.read_text()
    start, end = f"<!-- detection-table:{corpus} -->\n", f"<!-- /detection-table:{corpus} -->"
    if start not in text:
        raise SystemExit(f"docs/detection.md has no {start.strip()} marker")
    DOCS.write_text(text[:text.index(start) + len(start)] + table + text[text.index(end):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True,
                        help=f"a folder holding CORPUS.json (or to generate into), or one of {sorted(CORPORA)[1:]}")
    parser.add_argument("--write-docs", action="store_true", help=f"write the table into {DOCS.relative_to(REPO)}")
    options = parser.parse_args()
    name = options.corpus if CORPORA.get(options.corpus) else "generated"
    folder = CORPORA[name] if name != "generated" else Path(options.corpus)
    if not (folder / "CORPUS.json").exists():
        sys.path.insert(0, str(REPO / "sample_runs"))
        from corpus import generate_corpus
        generate_corpus(folder)
    manifest, results = evaluate(folder)
    for result in results:
        problems = result.missed + result.wrong_step + [f"false alarm {code}" for code in result.false_alarms]
        print(f"{result.name:<40} {'ok' if not problems else '; '.join(problems)}")
    table = detection_table(manifest, results)
    print(table)
    if options.write_docs:
        write_docs_section(name, table)


if __name__ == "__main__":
    main()
