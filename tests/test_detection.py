"""forensics against the labelled corpus: every injected failure found with the right code and onset,
no warning or error on any healthy twin, and docs/detection.md showing the table this run measures.

Cases forensics does not get right yet are listed in KNOWN_MISSES with the reason; the list is
strict (a case that starts passing must be taken off it), so it only ever shrinks honestly.
"""

from __future__ import annotations


import pytest

import detection
from forensics.checks import REGISTRY

# case -> why forensics misses it today
KNOWN_MISSES: dict[str, str] = {}


@pytest.fixture(scope="module")
def scored(corpus_dir):
    return detection.evaluate(corpus_dir)


def _problems(result: detection.CaseResult) -> list[str]:
    return result.missed + result.wrong_step + [f"false alarm: {code}" for code in result.false_alarms]


def test_every_injected_failure_is_found_at_its_onset(scored):
    _, results = scored
    unexpected = {r.name: _problems(r) for r in results if _problems(r) and r.name not in KNOWN_MISSES}
    assert unexpected == {}


def test_known_misses_are_still_misses(scored):
    _, results = scored
    fixed = [r.name for r in results if r.name in KNOWN_MISSES and not _problems(r)]
    assert fixed == [], "these cases pass now: remove them from KNOWN_MISSES and refresh docs/detection.md"


def test_healthy_twins_have_no_warning_or_error(scored):
    _, results = scored
    noisy = {r.name: r.found for r in results if r.healthy and any(s in detection.SERIOUS for _, s, _ in r.found)}
    assert noisy == {}


def test_every_registered_check_is_exercised_by_the_corpus(scored):
    manifest, _ = scored
    injected = {item["code"] for truth in manifest["cases"].values() for item in truth["expected_codes"]}
    untested = {check.code for check in REGISTRY} - injected - {"lr_mismatch"}
    assert untested == set()


def test_docs_show_the_measured_table(scored):
    manifest, results = scored
    table = detection.detection_table(manifest, results)
    text = detection.DOCS.read_text()
    assert table in text, ("docs/detection.md is out of date; refresh it with "
                           ".venv/bin/python tests/detection.py --corpus /tmp/corpus --write-docs")
