"""`forensics sweep` as a library: every run under a root analysed, one report each, and an index.

    from forensics.sweep import sweep, SweepOptions
    result = sweep("runs/", Path("out"), options=SweepOptions(jobs=2), baseline="last_night/")

One module per concern: `walk` (runs and skipped folders, local or fsspec URL), `cache` (incremental
reuse), `baseline` (diff against a previous sweep), `junit`, `executors` (process pool, Dask),
`progress`, `worker` (one run), `model` (the index's data), `run` (the orchestration).
"""

from forensics.sweep.model import FAIL_ON, FORMATS, SCHEMA, SkippedFolder, SweepEntry, SweepResult, SweepTask
from forensics.sweep.run import DEFAULT_TIMEOUT_SECONDS, SweepOptions, sweep

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "FAIL_ON", "FORMATS", "SCHEMA", "SkippedFolder", "SweepEntry", "SweepOptions",
           "SweepResult", "SweepTask", "sweep"]
