"""The wheel ships every package and the templates, so an installed forensics renders reports."""

from __future__ import annotations

import tomllib

from conftest import REPO


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for path in (REPO / "forensics").rglob("__init__.py")}
    assert on_disk | {"forensics.templates"} == listed


def test_templates_are_found_through_the_package():
    from forensics.render.environment import templates_dir

    assert (templates_dir() / "report.html.j2").is_file()
