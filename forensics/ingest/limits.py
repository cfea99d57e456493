"""The resource caps every reader obeys, in one place, each with the environment variable that changes it.

A run dir can hold anything: a 100 MB line without a newline, a YAML alias bomb, JSON nested a
hundred thousand levels deep, a log with a billion lines. Readers stream, and where something must
be held whole (a config, `trainer_state.json`) or grows with the file (values per file) it is capped.
A cap that is hit is never silent: the reader adds an input problem naming the file, what was found,
the limit and the variable below that raises it. README ("Security and robustness") lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Cap:
    """One documented limit: its default and the environment variable that overrides it."""

    name: str
    default: int
    env: str
    unit: str

    def value(self) -> int:
        """$env when it is a positive integer, else the default (read at each call, so tests can change it)."""
        configured = os.environ.get(self.env, "").strip().replace("_", "")
        return int(configured) if configured.isdigit() and int(configured) > 0 else self.default

    def hint(self) -> str:
        """The words a message ends with: how to change the limit."""
        return f"raise the limit with {self.env}"


# Longest physical line of a text log, CSV row, JSON-lines record or MLflow metric line.
MAX_LINE_BYTES = Cap("line length", 1024 * 1024, "FORENSICS_MAX_LINE_BYTES", "bytes")
# Largest config (YAML/JSON/TOML/INI) parsed whole.
MAX_CONFIG_BYTES = Cap("config size", 5 * 1024 * 1024, "FORENSICS_MAX_CONFIG_BYTES", "bytes")
# Largest HF trainer_state.json parsed whole (its log_history grows with the run).
MAX_TRAINER_STATE_BYTES = Cap("trainer_state.json size", 256 * 1024 * 1024, "FORENSICS_MAX_TRAINER_STATE_BYTES",
                              "bytes")
# Deepest nesting of lists/maps in a config or JSON document (real configs nest < 10 levels).
MAX_NESTING_DEPTH = Cap("nesting depth", 100, "FORENSICS_MAX_NESTING_DEPTH", "levels")
# Nodes a YAML document may expand to once its aliases are followed (the billion-laughs guard).
MAX_YAML_NODES = Cap("YAML nodes after alias expansion", 100_000, "FORENSICS_MAX_YAML_NODES", "nodes")
# Values (scalars, table cells, log metrics) or records taken from one file; the rest is not read.
MAX_VALUES_PER_FILE = Cap("values per file", 20_000_000, "FORENSICS_MAX_VALUES_PER_FILE", "values")

ALL_CAPS = (MAX_LINE_BYTES, MAX_CONFIG_BYTES, MAX_TRAINER_STATE_BYTES, MAX_NESTING_DEPTH, MAX_YAML_NODES,
            MAX_VALUES_PER_FILE)


def values_cap_message(display_path: str, where: str, limit: int) -> str:
    """The message of a `values_cap_reached` problem."""
    return (f"{display_path}: stopped after {limit:,} values or records ({where}), the per-file limit; the rest "
            f"of the file "
            f"is not read ({MAX_VALUES_PER_FILE.hint()})")
