"""Free-text summaries led by a counter: `Epoch 10: Train 42.54%, Val 44.77%, LR: 0.797074`, `Step 100: LR = 0.000120`.

The line has a capitalised `Epoch N`, `Step N` or `Iter N` (after any timestamp or logger prefix),
optionally `/TOTAL`, then a colon, dash or bar; then `Name value` or `Name: value` or `Name = value`
pairs. A `Step`/`Iter` counter is the step; an `Epoch` counter is only an epoch (the reader then
uses the last step seen, or the epoch when the log has no steps at all).

Real lines:
    Epoch 10: Train 42.54%, Val 44.77%, LR: 0.797074
    Step 100: LR = 0.000120
    2022-07-21 04:20:03,677 - INFO: ===> Epoch 222 Complete: Avg. Loss: 0.013878 time: 659.40
"""

from __future__ import annotations

import re

from forensics.ingest.logs.formats.base import NUMBER, LineFormat, Parsed, to_float

_LEAD = re.compile(r"(?:^|[\s>:|\]-])(Epoch|Step|Iter|Iteration)\s*\[?\s*(\d+)(?:\s*/\s*(\d+))?\]?"
                   r"\s*(?:Complete)?\s*[:|,-]")
_PAIR = re.compile(rf"([A-Za-z][\w@/.]*(?: [A-Za-z][\w@/]*)?)\.?\s*(?::|=)?\s*({NUMBER})(%?)(?![\w.:/])")
_NOT_METRIC_WORDS = {"complete", "avg", "epoch", "step", "iter", "iteration"}


def parse(line: str) -> Parsed | None:
    """Pairs after the leading counter; the counter gives the step (Step/Iter) or the epoch."""
    lead = _LEAD.search(line)
    if not lead:
        return None
    values = {}
    for name, number, _percent in _PAIR.findall(line[lead.end():]):
        name = name.strip()
        if name.lower().split()[-1] in _NOT_METRIC_WORDS:
            continue
        values[re.sub(r"^Avg\.? ", "", name)] = to_float(number)
    if not values:
        return None
    counter = int(lead.group(2))
    if lead.group(1).lower() == "epoch":
        return Parsed(values, epoch=counter)
    return Parsed(values, step=counter)


FORMAT = LineFormat("free_text", ("poch", "tep", "ter"), parse)
