"""The library entry point behind `forensics sweep`: every run under a root analysed, one report each, an index.

Runs are analysed by `forensics.analyze.analyze` in worker processes or on Dask (`executors`), unchanged
runs are taken from the cache in OUT (`cache`), the index can be diffed against a previous sweep
(`baseline`). Nothing is written inside the root or inside any run found below it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from forensics import __version__
from forensics.errors import ForensicsError
from forensics.render.output import refuse_inside, safe_file_name, write_report
from forensics.render.sweep_index import INDEX_RENDERERS
from forensics.schedule import ScheduleOptions
from forensics.storage import is_url
from forensics.sweep.baseline import diff_against, load_baseline
from forensics.sweep.cache import SweepCache, run_key
from forensics.sweep.executors import default_memory_limit, run_in_processes, run_on_dask
from forensics.sweep.model import FORMATS, SweepEntry, SweepResult, SweepTask
from forensics.sweep.walk import walk_root

# A run path made into a file name is cut here (plus a short hash of the full path) to stay below
# the 255-byte name limit of common file systems.
MAX_NAME_CHARS = 120
DEFAULT_TIMEOUT_SECONDS = 600.0
EXECUTORS = ("processes", "dask")


@dataclass(frozen=True)
class SweepOptions:
    """How the analyses run: where, how many at once, and their limits."""

    jobs: int = 1
    executor: str = "processes"
    scheduler: str | None = None          # a Dask scheduler address; None starts a LocalCluster
    timeout_per_run: float | None = DEFAULT_TIMEOUT_SECONDS
    memory_per_worker: int | None = None  # bytes; None shares the machine's memory out between the workers
    use_cache: bool = True


def sweep(root: str | Path, out_dir: Path, formats: tuple[str, ...] = ("html", "json"), jobs: int = 1,
          schedule: ScheduleOptions | None = None, follow_links: bool = False, command: str = "",
          options: SweepOptions | None = None, baseline: str | Path | None = None,
          on_entry: Callable[[SweepEntry], None] | None = None, on_start: Callable[[int], None] | None = None
          ) -> SweepResult:
    """Find every run under `root` (a folder or an fsspec URL), analyse each, write reports and the index.

    Raises `ForensicsError` (before anything is written) when `root` is not a folder, holds no run, the
    baseline is not a sweep index, or `out_dir` lies inside `root` or inside a run. Errors of one run
    never stop the sweep. `on_start(number of runs)` and `on_entry(entry)` report progress.
    """
    options = options or SweepOptions(jobs=jobs)
    unknown = [name for name in formats if name not in FORMATS]
    if unknown or not formats:
        raise ForensicsError(f"--format: {','.join(unknown) or 'nothing'} given; choose from {','.join(FORMATS)}")
    if options.executor not in EXECUTORS:
        raise ForensicsError(f"--executor: {options.executor} given; choose from {','.join(EXECUTORS)}")
    previous = load_baseline(baseline) if baseline is not None else None
    with walk_root(root, follow_links) as walked:
        target = refuse_inside(out_dir, walked.guard, "the sweep root")
        for location in walked.locations:  # a run reached through a followed link lies outside the root
            if not is_url(location):
                refuse_inside(target, Path(location))
        if not walked.paths:
            raise ForensicsError(f"{walked.root}: no training runs found (no event files, checkpoints, logs, "
                                 "trainer_state.json or metric tables in any folder)")
        if target.exists() and not target.is_dir():
            raise ForensicsError(f"{target}: exists and is not a directory; give a folder with -o")
        target.mkdir(parents=True, exist_ok=True)
        command = command or f"forensics sweep {root} -o {out_dir}"
        stems = _file_stems(walked.paths, Path(walked.guard).name if is_url(str(root)) else Path(walked.root).name)
        tasks = [SweepTask(location, path, stem, tuple(formats), command, schedule, follow_links,
                           source if source != location else "")
                 for location, path, stem, source in zip(walked.locations, walked.paths, stems, walked.sources)]
        result = SweepResult(root=walked.root, out_dir=str(target), tool_version=__version__, command=command,
                             generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                             formats=tuple(formats), walk_problems=walked.problems, skipped=walked.skipped,
                             executor=options.executor)
        cache = SweepCache(target) if options.use_cache else None
        if on_start:
            on_start(len(tasks))
        entries: dict[str, SweepEntry] = {}
        keys: dict[str, str | None] = {}

        def finished(task: SweepTask, outcome: tuple[SweepEntry, dict[str, str]]) -> None:
            entry, texts = outcome
            for name, text in texts.items():  # written as they arrive: no report is held in memory
                write_report(text, target / entry.reports[name], walked.guard)
            entries[task.path] = entry
            if cache is not None:
                cache.remember(task.path, keys.get(task.path), entry)
            if on_entry:
                on_entry(entry)

        to_run = []
        for task, source in zip(tasks, walked.sources):
            reused = None
            if cache is not None:
                try:
                    keys[task.path] = run_key(task, source, __version__)
                except (OSError, ForensicsError):
                    keys[task.path] = None
                reused = cache.reusable(task.path, keys[task.path], target) if keys[task.path] else None
            if reused is not None:
                finished(task, (reused, {}))
            else:
                to_run.append(task)
        if to_run:
            _execute(to_run, options, finished)
        result.entries = [entries[task.path] for task in tasks]
        if previous is not None:
            result.baseline = diff_against(previous, result.entries)
        for name, render in INDEX_RENDERERS.items():
            result.index_files[name] = write_report(render(result), target / f"index.{name}", walked.guard)
        if cache is not None:
            cache.save(walked.guard)
        result.guard = walked.guard
    return result


def _execute(tasks: list[SweepTask], options: SweepOptions, finished) -> None:
    workers = max(1, options.jobs)
    memory = options.memory_per_worker or default_memory_limit(workers)
    if options.executor == "dask":
        run_on_dask(tasks, options.scheduler, workers, options.timeout_per_run, memory, finished)
    else:
        run_in_processes(tasks, workers, options.timeout_per_run, memory, finished)


def _file_stems(paths: list[str], root_name: str) -> list[str]:
    """One distinct, safe file name stem per run path: `group/run` -> `group__run`."""
    stems, taken = [], set()
    for path in paths:
        stem = "__".join(safe_file_name(part) for part in (root_name if path == "." else path).split("/"))
        if len(stem) > MAX_NAME_CHARS:
            stem = stem[:MAX_NAME_CHARS] + "-" + hashlib.sha256(path.encode()).hexdigest()[:8]
        unique, number = stem, 2
        while unique.lower() in taken or unique.lower() == "index":  # case-insensitive file systems
            unique, number = f"{stem}-{number}", number + 1
        taken.add(unique.lower())
        stems.append(unique)
    return stems
