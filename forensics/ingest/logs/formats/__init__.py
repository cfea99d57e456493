"""The registry of log formats, tried in this order on every line; the first that parses it wins.

Specific styles come first (each has a cheap substring hint, so a line costs a few `in` checks
per format that cannot match); the generic ones (free text, key/value) come last.
"""

from __future__ import annotations

from forensics.ingest.logs.formats import (deepspeed, fairseq_json, free_text, hf_dict, json_lines, key_value,
                                           lightning, megatron, mmdet, nanogpt, timm, tqdm_postfix)
from forensics.ingest.logs.formats.base import LineFormat, Parsed

FORMAT_MODULES = (hf_dict, fairseq_json, megatron, deepspeed, timm, mmdet, lightning, tqdm_postfix, nanogpt,
                  json_lines, free_text, key_value)
FORMATS: tuple[LineFormat, ...] = tuple(module.FORMAT for module in FORMAT_MODULES)


_TABLE = tuple((line_format, line_format.hints, line_format.parse) for line_format in FORMATS)


def parse_line(line: str) -> tuple[LineFormat, Parsed] | None:
    """The first format that recognises the line, with what it read.

    Written as plain loops (not `LineFormat.match`): this runs once per line of logs with millions.
    """
    for line_format, hints, parse in _TABLE:
        if hints:
            for hint in hints:
                if hint in line:
                    break
            else:
                continue
        parsed = parse(line)
        if parsed is not None:
            return line_format, parsed
    return None
