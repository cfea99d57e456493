"""The Jinja2 environments and the small pure helpers templates use."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from forensics.formatting import fmt_bytes, fmt_lr, fmt_percent, fmt_step, fmt_value


def _templates_dir() -> Path:
    """templates/ ships inside the package as `forensics/templates`; a source checkout has it at the top."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / "report.html.j2").is_file():
            return candidate
    raise FileNotFoundError(f"report templates not found beside {package}; the installation is incomplete")


def _md_cell(text) -> str:
    """Text safe inside a Markdown table cell: no pipe, no newline, no stray backtick."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("`", "\\`")


def _md_text(text) -> str:
    """Our own prose (fixes) on one line: code spans kept, pipes escaped for tables."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _md_code(text) -> str:
    """Text from a log as an inline code span that its own backticks cannot break."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    fence = "`"
    while fence in flat:
        fence += "`"
    return f"{fence} {flat} {fence}" if flat else ""


@dataclass(frozen=True)
class Sparkline:
    """A static chart: polyline coordinates plus the value range the y axis spans."""

    points: str
    y_low: float | None
    y_high: float | None


def sparkline(steps, values, width: int = 240, height: int = 40, log_scale: bool = False) -> Sparkline:
    """A static chart for pages read without JavaScript.

    The y range never shrinks below a decade (log) or 10% of the level (linear): a nearly constant
    LR must look flat, not like a ramp magnified to fill the box.
    """
    pairs = [(s, v) for s, v in zip(steps, values) if v is not None and (not log_scale or v > 0)]
    if not pairs:
        return Sparkline("", None, None)
    ys = [math.log10(v) if log_scale else v for _, v in pairs]
    low, high = min(ys), max(ys)
    minimum_span = 1.0 if log_scale else 0.1 * max(abs(low), abs(high)) or 1.0
    if high - low < minimum_span:
        middle = (high + low) / 2
        low, high = middle - minimum_span / 2, middle + minimum_span / 2
    x_low, x_span = pairs[0][0], (pairs[-1][0] - pairs[0][0]) or 1
    points = " ".join(f"{(s - x_low) / x_span * width:.1f},{height - (y - low) / (high - low) * height:.1f}"
                      for (s, _), y in zip(pairs, ys))
    unlog = (lambda y: 10 ** y) if log_scale else (lambda y: y)
    return Sparkline(points, unlog(low), unlog(high))


def _code_spans(text) -> Markup:
    """Escape text, then show `backticked` parts (code in fixes and messages) as <code>."""
    escaped = str(escape(str(text)))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _common(environment: jinja2.Environment) -> jinja2.Environment:
    environment.filters.update(fmt_step=fmt_step, fmt_lr=fmt_lr, fmt_value=fmt_value, fmt_percent=fmt_percent,
                               fmt_bytes=fmt_bytes, md_cell=_md_cell, md_code=_md_code, md_text=_md_text,
                               code_spans=_code_spans)
    environment.globals.update(sparkline=sparkline)
    return environment


@lru_cache(maxsize=None)
def html_environment() -> jinja2.Environment:
    """HTML: everything escaped unless a template says otherwise (no template does for run data)."""
    return _common(jinja2.Environment(loader=jinja2.FileSystemLoader(_templates_dir()), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True))


@lru_cache(maxsize=None)
def markdown_environment() -> jinja2.Environment:
    """Markdown: no HTML escaping; run text goes through md_cell/md_code instead."""
    return _common(jinja2.Environment(loader=jinja2.FileSystemLoader(_templates_dir()), autoescape=False,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      keep_trailing_newline=True))
