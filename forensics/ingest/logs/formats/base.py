"""What a log format is: a name, cheap hints, and a function from one clean line to what it says.

A format module documents its real example lines in its docstring under a line ending in
`Real lines:`, each example indented by four spaces; `docstring_examples` extracts them so a test
feeds every documented line to its format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

# A number as training scripts print it: 0.6931, -1.2e-04, 2.999E-04, 1,234 is not one, nan, inf.
# NaN/inf may carry tqdm's ".0" (Lightning bars print `g_loss=nan.0`).
NUMBER = r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|(?:nan|NaN|NAN|inf|Inf|INF|-inf|-Inf)(?:\.0)?)"


def to_float(text: str) -> float:
    """A printed number as a float; NaN/inf spelled any common way are kept as NaN/inf."""
    lowered = text.strip().lower().rstrip("%")
    if lowered.endswith(".0") and lowered[:-2].lstrip("+-") in ("nan", "inf"):
        lowered = lowered[:-2]  # tqdm's postfix formatting of a float NaN/inf (Lightning bars): nan.0, inf.0
    if lowered in ("nan", "+nan", "-nan"):
        return math.nan
    if lowered in ("inf", "+inf", "infinity"):
        return math.inf
    if lowered in ("-inf", "-infinity"):
        return -math.inf
    return float(lowered)


def to_number(value) -> float | None:
    """A JSON value as a float when it is a number or a numeric string (fairseq logs strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return value
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float (JSON allows 10**400)
            return None
    if isinstance(value, str):
        try:
            return to_float(value)
        except ValueError:
            return None
    return None


def to_step(value: float | None) -> int | None:
    """A step as an int64-range integer; None for None, NaN, inf or a step no int64 can hold."""
    if value is None or not -(2**63) <= value <= 2**63 - 1:  # NaN fails the comparison too
        return None
    return int(value)


@dataclass
class Parsed:
    """What one line says.

    `values` maps the tag as the line spells it to its value. `step` is the optimizer step the
    line states or the format computes; `step_basis` says how it was computed (None when the line
    printed the step itself). `progress` is a progress-bar counter (n, total) when the line has no
    step of its own; `epoch` is the epoch when stated. `events` are (kind, data) pairs that only
    the format can see (Megatron's count of NaN iterations, for instance). `facts` are counters a
    start-up line states that later lines' steps depend on (HF's `Num Epochs = 3` as
    `{"num_epochs": 3}`); the reader keeps them for the rest of the file. `wall_time` is a clock
    the record itself carries (epoch seconds in a JSON field), None otherwise.
    """

    values: dict[str, float] = field(default_factory=dict)
    step: int | None = None
    step_basis: str | None = None
    epoch: float | None = None
    progress: tuple[int, int] | None = None
    events: list[tuple[str, dict]] = field(default_factory=list)
    facts: dict[str, int] = field(default_factory=dict)
    wall_time: float | None = None


@dataclass(frozen=True)
class LineFormat:
    """One log style. `hints`: substrings one of which every line of the style contains (a fast
    pre-filter; empty = always try). `parse` returns None when the line is not of this style."""

    name: str
    hints: tuple[str, ...]
    parse: Callable[[str], Parsed | None]

    def match(self, line: str) -> Parsed | None:
        """Parse the line if a hint is present."""
        if self.hints and not any(hint in line for hint in self.hints):
            return None
        return self.parse(line)


def docstring_examples(doc: str) -> list[str]:
    """The example lines documented under `Real lines:` in a format module's docstring."""
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.rstrip().endswith("Real lines:"))
    except StopIteration:
        return []
    examples = []
    for line in lines[start + 1:]:
        if not line.strip():
            if examples:
                break
            continue
        if not line.startswith("    "):
            break
        examples.append(line[4:].replace("\\r", "\r").replace("\\t", "\t"))
    return examples


_PAIR_SPLIT = re.compile(r"\s*[,|]\s*|\s{2,}|\t")


def pairs_with_colon(text: str, skip: frozenset[str] = frozenset()) -> dict[str, float]:
    """`key: value` pairs separated by commas, bars, tabs or runs of spaces (mmdet, Megatron)."""
    values = {}
    for match in re.finditer(rf"([A-Za-z_][\w./@()\- ]*?):\s*({NUMBER})(?![\w:])", text):
        key = match.group(1).strip()
        if key.lower() in skip:
            continue
        values[key] = to_float(match.group(2))
    return values
