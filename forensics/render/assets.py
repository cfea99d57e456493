"""What the HTML page inlines besides its text: scripts, styles, chart data, and the CSP that allows them.

The page must open from a ticket attachment with no network: the vendored uPlot (templates/vendor/uplot,
refreshed by .ci/vendor-js) and our own report.js are inlined, and the Content-Security-Policy allows
exactly those scripts by their sha256 and nothing else (no connections, no frames, no forms).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup

from forensics.render.environment import templates_dir

# Inline scripts in page order: the library, then the code that draws the charts with it.
SCRIPT_FILES = ("vendor/uplot/uPlot.iife.min.js", "report.js")
STYLE_FILES = ("report.css", "vendor/uplot/uPlot.min.css")
# Escapes that keep JSON inside <script type="application/json"> from closing the element or
# opening a comment, whatever a tag name or log line contains.
_JSON_HTML_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                      0x2028: "\\u2028", 0x2029: "\\u2029"}


@dataclass(frozen=True)
class InlineScript:
    """A script element's exact body and the CSP source that allows it."""

    name: str
    body: Markup
    csp_source: str


@dataclass(frozen=True)
class PageAssets:
    """Everything inlined into the page that does not come from the run."""

    styles: tuple[Markup, ...]
    scripts: tuple[InlineScript, ...]
    csp: str
    uplot_version: str


@lru_cache(maxsize=None)
def page_assets() -> PageAssets:
    """Read the asset files once per process."""
    root = templates_dir()
    scripts = []
    for name in SCRIPT_FILES:
        # A literal "</script" would end the element early; "<\/" means the same to JavaScript.
        body = (root / name).read_text(encoding="utf-8").strip().replace("</script", "<\\/script")
        digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii")
        scripts.append(InlineScript(name, Markup(body), f"'sha256-{digest}'"))
    styles = tuple(Markup((root / name).read_text(encoding="utf-8").strip().replace("</style", "<\\/style"))
                   for name in STYLE_FILES)
    csp = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
           f"script-src {' '.join(script.csp_source for script in scripts)}; "
           "connect-src 'none'; form-action 'none'; base-uri 'none'")
    version = (root / "vendor" / "uplot" / "VERSION").read_text(encoding="utf-8").strip()
    return PageAssets(styles, tuple(scripts), csp, version)


def json_island(data) -> Markup:
    """JSON for a `<script type="application/json">` element: no `<`, `>` or `&` survives unescaped."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return Markup(text.translate(_JSON_HTML_ESCAPES))


def compact_number(value: float | None) -> float | None:
    """Six significant digits: enough for any chart, a third of the bytes of a full repr."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")
