"""Strip what terminals and launchers add to a log line: ANSI colours and rank prefixes."""

from __future__ import annotations

import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]|\x1b[=>]")
# torchrun `[rank0]:`, `--tee` `[default0]:`, mpirun/horovod `[1,0]<stdout>:`, `rank0: `, Megatron `1: `
_RANK_PREFIXES = (
    re.compile(r"^\s*\[rank(\d+)\]:\s?"),
    re.compile(r"^\s*\[default(\d+)\]:\s?"),
    re.compile(r"^\s*\[(\d+),\d+\]<std(?:out|err)>:\s?"),
    re.compile(r"^\s*rank(\d+):\s"),
)


def strip_ansi(text: str) -> str:
    """The text without colour and cursor escape sequences."""
    return _ANSI.sub("", text) if "\x1b" in text else text


def split_rank(text: str) -> tuple[int | None, str]:
    """(rank, rest of the line) when the line starts with a launcher's rank prefix, else (None, text)."""
    if "rank" not in text and "[" not in text:
        return None, text
    for pattern in _RANK_PREFIXES:
        match = pattern.match(text)
        if match:
            return int(match.group(1)), text[match.end():]
    return None, text
