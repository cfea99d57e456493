r"""Any tqdm bar: `desc: PCT%|bar| N/TOTAL [elapsed<left, rate, key=value, ...]`, also `\r`-separated updates.

A bar with a postfix gives its values; a bar without one is still recognised, as a progress
counter the reader can hang later step-less lines on (HF Trainer dicts, DeepSpeed overflows).

Real lines:
      3%|▎         | 12/391 [00:03<01:40,  3.77it/s, loss=0.693, lr=1.20e-04]
    Training:  45%|████▌     | 176/391 [00:47<00:57,  3.72it/s, loss=0.512, lr=9.80e-04]\r Training:  45%|████▌     | 177/391 [00:47<00:57,  3.73it/s, loss=0.508, lr=9.81e-04]
     14%|█▍        | 377/2724 [13:55:57<86:19:20, 132.41s/it]
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

_BAR = re.compile(r"\d+%\|[^|]*\|\s*(\d+)/(\d+)\s*\[([^\]]*)\]?")
_POSTFIX_PAIR = re.compile(rf"([A-Za-z_][\w/.@-]*)=\s*({NUMBER})(?![\w.])")


def postfix_values(inside_brackets: str) -> dict[str, float]:
    """The `key=value` pairs of a tqdm postfix (what follows the rate inside the brackets)."""
    return {key: to_float(value) for key, value in _POSTFIX_PAIR.findall(inside_brackets)}


def parse(line: str) -> Parsed | None:
    """Postfix values and the bar's counter."""
    match = _BAR.search(line)
    if not match:
        return None
    return Parsed(postfix_values(match.group(3)), progress=(int(match.group(1)), int(match.group(2))))


FORMAT = LineFormat("tqdm", ("%|",), parse)
