"""The Jinja2 environments and the small pure helpers templates use."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from forensics.formatting import fmt_bytes, fmt_lr, fmt_percent, fmt_step, fmt_value, split_headline


def templates_dir() -> Path:
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


def _fmt_coverage(value) -> str:
    """A coverage figure of a text source: numbers formatted, sample lists shortened."""
    if isinstance(value, (list, tuple)):
        shown = "; ".join(" ".join(str(item).split())[:80] for item in value[:3])
        return f"{len(value)} ({shown}{'; ...' if len(value) > 3 else ''})" if value else "0"
    if isinstance(value, dict):
        return ", ".join(f"{key}={_fmt_coverage(item)}" for key, item in list(value.items())[:6])
    return fmt_value(value) if isinstance(value, (int, float)) else " ".join(str(value).split())[:120]


def _first_sentence(text) -> str:
    return split_headline(text)[0]


def _code_spans(text) -> Markup:
    """Escape text, then show `backticked` parts (code in fixes and messages) as <code>."""
    escaped = str(escape(str(text)))
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _common(environment: jinja2.Environment) -> jinja2.Environment:
    environment.filters.update(fmt_step=fmt_step, fmt_lr=fmt_lr, fmt_value=fmt_value, fmt_percent=fmt_percent,
                               fmt_bytes=fmt_bytes, md_cell=_md_cell, md_code=_md_code, md_text=_md_text,
                               code_spans=_code_spans, fmt_coverage=_fmt_coverage,
                               first_sentence=_first_sentence)
    return environment


@lru_cache(maxsize=None)
def html_environment() -> jinja2.Environment:
    """HTML: everything escaped unless a template says otherwise (no template does for run data)."""
    return _common(jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True))


@lru_cache(maxsize=None)
def markdown_environment() -> jinja2.Environment:
    """Markdown: no HTML escaping; run text goes through md_cell/md_code instead."""
    return _common(jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), autoescape=False,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      keep_trailing_newline=True))
