"""fairseq / metaseq with `--log-format json`: `... | INFO | train_inner | {"epoch": 1, ..., "num_updates": "100"}`.

Values are JSON strings holding numbers. The step is `num_updates` (optimizer updates); `gnorm`
is the gradient norm. `valid` records are tagged `valid_...` by fairseq itself.

Real lines:
    slurm_procid 0 : 2022-11-11 14:05:27 | INFO | train_inner | {"epoch": 1, "actv_norm": "0.035", "pos_norm": "0.192", "tok_norm": "0.271", "emb_norm": "0.034", "docsperex": "2.64", "loss": "15.878", "ppl": "60214.8", "wps": "0", "ups": "0", "wpb": "1.04858e+06", "bsz": "512", "num_updates": "1", "lr": "2.80112e-07", "gnorm": "16.981", "clip": "100", "train_wall": "12", "cuda_gb_allocated": "19.7", "cuda_gb_reserved": "41.1", "cuda_gb_free": "59.6", "wall": "73"}
    2020-07-17 04:08:14 | INFO | train_inner | {"epoch": 1, "update": 0.001, "loss": "16.348", "ppl": "83437.5", "wps": "8640.2", "ups": "4.66", "wpb": "1854", "bsz": "2", "num_updates": "100", "lr": "1e-06", "gnorm": "4.215", "loss_scale": "128", "train_wall": "22", "wall": "120"}
    2020-07-17 05:10:02 | INFO | valid | {"epoch": 1, "valid_loss": "8.114", "valid_nll_loss": "6.883", "valid_ppl": "118.06", "valid_wps": "25912.1", "valid_wpb": "1874.6", "valid_bsz": "2", "valid_num_updates": "600"}
"""

from __future__ import annotations

import json
import re

from forensics.ingest.logs.formats.base import LineFormat, Parsed, to_number, to_step

_RECORD = re.compile(r"\|\s*(train_inner|train|valid|[\w-]+)\s*\|\s*(\{.*\})\s*$")
_NOT_SERIES = ("epoch", "update", "num_updates", "valid_num_updates", "wall", "train_wall")


def parse(line: str) -> Parsed | None:
    """Every numeric field; the step is `num_updates` (or `valid_num_updates`)."""
    match = _RECORD.search(line)
    if not match:
        return None
    try:
        record = json.loads(match.group(2))
    except ValueError:  # a RecursionError (absurd nesting) reaches the log reader, which reports the line
        return None
    if not isinstance(record, dict):
        return None
    updates = to_number(record.get("num_updates", record.get("valid_num_updates")))
    if to_step(updates) is None:
        return None
    values = {key: number for key, raw in record.items() if key not in _NOT_SERIES
              for number in [to_number(raw)] if number is not None}
    return Parsed(values, step=to_step(updates), epoch=to_number(record.get("epoch")))


FORMAT = LineFormat("fairseq_json", ('"num_updates"', '"valid_num_updates"'), parse)
