"""`--junit FILE`: the sweep as JUnit XML, one testcase per run, for Jenkins, GitLab and GitHub reporters.

A testcase fails exactly when its run meets `--fail-on` (so the XML and the exit code agree): the
failure's message is the run's headline, its text lists the findings, and `system-out` names the
report. A run that could not be analysed is an `<error>` under any active gate. Folders that were not
runs and the walk's problems go in the suite's `system-out`. Built with `xml.etree.ElementTree`, so
every text from a run is escaped by the library.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from forensics.render.output import write_report
from forensics.sweep.model import SweepEntry, SweepResult

# XML 1.0 cannot carry most control characters, even escaped; log text can hold them.
_XML_ILLEGAL = {code: None for code in (*range(0, 9), 11, 12, *range(14, 32))}


def _text(value: str) -> str:
    return value.translate(_XML_ILLEGAL)


def junit_xml(result: SweepResult, failing: Callable[[SweepEntry], bool]) -> str:
    """The JUnit document; `failing(entry)` says whether a run meets the gate."""
    suites = ET.Element("testsuites", name="forensics sweep")
    suite = ET.SubElement(suites, "testsuite", name=f"forensics sweep {_text(result.root)}",
                          timestamp=result.generated_at)
    failures = errors = 0
    for entry in sorted(result.entries, key=lambda item: item.path):
        case = ET.SubElement(suite, "testcase", classname="forensics.sweep", name=_text(entry.path),
                             time=f"{entry.seconds:.3f}")
        if failing(entry):
            if entry.status == "error":
                errors += 1
                ET.SubElement(case, "error", message=_text(entry.headline), type="analysis_error").text = \
                    _text(entry.headline)
            else:
                failures += 1
                failure = ET.SubElement(case, "failure", message=_text(entry.headline), type=entry.status)
                failure.text = _text("\n".join(f"{item.severity} {item.code} step {item.step}"
                                               + (f"-{item.end_step}" if item.end_step is not None else "")
                                               for item in entry.findings) or entry.headline)
        report = next((entry.reports[name] for name in ("html", "md", "json") if name in entry.reports), None)
        lines = [f"status: {entry.status}" + (" (reused from the cache)" if entry.reused else "")]
        if report:
            lines.append(f"report: {Path(result.out_dir) / report}")
        ET.SubElement(case, "system-out").text = _text("\n".join(lines))
    suite.set("tests", str(len(result.entries)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    suite.set("time", f"{sum(entry.seconds for entry in result.entries):.3f}")
    notes = [f"not a run: {folder.path}: {folder.reason}" for folder in result.skipped]
    notes += [f"walk problem: {problem.message}" for problem in result.walk_problems]
    ET.SubElement(suite, "system-out").text = _text("\n".join(notes))
    for name in ("tests", "failures", "errors"):
        suites.set(name, suite.get(name))
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(result: SweepResult, destination: str | Path, failing: Callable[[SweepEntry], bool],
                guard: Path) -> str:
    """Write the JUnit file (never inside the sweep root); return where it went."""
    return write_report(junit_xml(result, failing), destination, guard)
