"""Pure formatting helpers shared by finding messages and every renderer."""

from __future__ import annotations

import math
import re


def fmt_step(step: int | None) -> str:
    """`45114` -> `45,114`; None -> `?`."""
    return "?" if step is None else f"{int(step):,}"


def fmt_lr(value: float | None) -> str:
    """Learning rates in the form people compare them: `2.84e-03`."""
    if value is None:
        return "?"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.2e}"


def fmt_value(value: float | int | str | None) -> str:
    """A metric value: 4 significant digits, NaN and inf spelled out."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3e}"
    return f"{value:.4g}"


def fmt_percent(fraction: float) -> str:
    """0.7741 -> `77%`."""
    return f"{fraction * 100:.0f}%"


def fmt_bytes(size: int) -> str:
    """1536 -> `1.5 KB`."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


_SENTENCE_END = re.compile(r"(?<=[.;])\s+(?=[A-Z])")


def split_headline(text) -> tuple[str, str]:
    """The first sentence of a finding message (a header's or table row's one line) and the rest."""
    parts = _SENTENCE_END.split(" ".join(str(text).split()), maxsplit=1)
    first = parts[0][:-1] + "." if parts[0].endswith(";") else parts[0]
    return first, parts[1] if len(parts) > 1 else ""
