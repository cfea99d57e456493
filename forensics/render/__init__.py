"""Renderers: each turns a `Report` into text of one format. They read only the report."""

from forensics.render.html import render_html
from forensics.render.json_format import render_json
from forensics.render.markdown import render_markdown

RENDERERS = {"html": render_html, "json": render_json, "md": render_markdown}
EXTENSIONS = {"html": "html", "json": "json", "md": "md"}
