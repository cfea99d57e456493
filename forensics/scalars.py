"""Scalars as a DataFrame, for users who need only the values: `read_scalars`, `read_log_scalars`.

The same readers as `forensics analyze` (every CRC verified, nothing sampled, no step sorted or
deduplicated), without the run model or the checks. What a reader could not read becomes a
`ForensicsInputWarning` naming the file, and everything readable is still returned: a damaged
file never costs the others (tbparse raising on the first bad file is the counter-example).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from forensics.ingest import discovery as kinds
from forensics.ingest.discovery import FoundFile, discover
from forensics.ingest.problems import InputProblem

# What reading one file gives `_frame`: (tag, steps, values, fifth column) per series, and problems.
Series = tuple[str, np.ndarray, np.ndarray, np.ndarray]
FileReader = Callable[[FoundFile], tuple[list[Series], list[InputProblem]]]

SCALAR_COLUMNS = ("tag", "step", "value", "wall_time", "file")
LOG_SCALAR_COLUMNS = ("tag", "step", "value", "line", "file")


class ForensicsInputWarning(UserWarning):
    """Part of an input could not be read (the message names the file and the place)."""


def read_scalars(path_or_dir: str | os.PathLike) -> pd.DataFrame:
    """Every scalar of a TensorBoard event file, or of every event file under a directory.

    Returns one row per value with columns `tag`, `step` (int64), `value` (float64: NaN and inf
    kept), `wall_time` (float64 seconds) and `file` (the event file's path relative to the
    directory, or its name when a file was given). `tag` and `file` are categoricals. Rows come
    file by file (in path order), tag by tag (in order of first appearance), each tag's values in
    file order. Damaged or unreadable files give a `ForensicsInputWarning` each, never an
    exception; raises FileNotFoundError only when `path_or_dir` does not exist.
    """
    from forensics.ingest.tensorboard import read_event_file

    def read(found: FoundFile) -> tuple[list[Series], list[InputProblem]]:
        events = read_event_file(found.path, found.display_path)
        return [(s.tag, s.steps, s.values, s.wall_times) for s in events.scalars], events.problems

    return _frame(_files(Path(path_or_dir), kinds.TENSORBOARD), read, "wall_time", np.float64)


def read_log_scalars(path_or_dir: str | os.PathLike) -> pd.DataFrame:
    """Every metric value in a training log (stdout/stderr text), or in every log under a directory.

    The log formats `forensics analyze` recognises (HF Trainer dicts, Megatron-LM, timm, tqdm and
    Lightning bars, key=value lines, ...), detected per file. Returns one row per value with
    columns `tag` (the name as logged, `rank1/loss` when ranks interleave), `step` (int64; rebuilt
    when the log has none, as in the report), `value` (float64), `line` (1-based line number) and
    `file`. Unreadable parts give a `ForensicsInputWarning`; raises FileNotFoundError only when
    `path_or_dir` does not exist.
    """
    from forensics.ingest.logs.reader import read_log

    def read(found: FoundFile) -> tuple[list[Series], list[InputProblem]]:
        source = read_log(found)
        return [(s.tag, s.steps, s.values, s.records) for s in source.series], source.problems

    return _frame(_files(Path(path_or_dir), kinds.LOG), read, "line", np.int64)


def _files(path: Path, kind: str) -> list[FoundFile]:
    """The files to read: `path` itself, or those of `kind` under it as `forensics analyze` finds them."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not path.is_dir():
        stat = path.stat()
        return [FoundFile(path, path.name, kind, stat.st_size, stat.st_mtime)]
    found = discover(path)
    for problem in found.problems:
        _warn(problem)
    return sorted(found.of_kind(kind), key=lambda f: f.display_path)


def _frame(files: Iterable[FoundFile], read: FileReader, fifth: str, fifth_dtype) -> pd.DataFrame:
    """One DataFrame of every file's series: categorical tag and file, numeric columns concatenated."""
    tags: dict[str, int] = {}
    names: list[str] = []
    pieces: dict[str, list[np.ndarray]] = {"tag": [], "step": [], "value": [], fifth: [], "file": []}
    for file_code, found in enumerate(files):
        names.append(found.display_path)
        series, problems = read(found)
        for problem in problems:
            _warn(problem)
        for tag, steps, values, fifth_values in series:
            count = len(steps)
            pieces["tag"].append(np.full(count, tags.setdefault(tag, len(tags)), np.int32))
            pieces["step"].append(steps.astype(np.int64, copy=False))
            pieces["value"].append(values.astype(np.float64, copy=False))
            pieces[fifth].append(fifth_values.astype(fifth_dtype, copy=False))
            pieces["file"].append(np.full(count, file_code, np.int32))
    dtypes = {"tag": np.int32, "step": np.int64, "value": np.float64, fifth: fifth_dtype, "file": np.int32}
    columns = {name: np.concatenate(parts) if parts else np.zeros(0, dtypes[name])
               for name, parts in pieces.items()}
    columns["tag"] = pd.Categorical.from_codes(columns["tag"], categories=list(tags))
    columns["file"] = pd.Categorical.from_codes(columns["file"], categories=names)
    return pd.DataFrame(columns)


def _warn(problem: InputProblem) -> None:
    # stacklevel 4: the user's call -> read_* -> _frame/_files -> here
    warnings.warn(problem.message, ForensicsInputWarning, stacklevel=4)


__all__ = ["ForensicsInputWarning", "read_log_scalars", "read_scalars", "SCALAR_COLUMNS",
           "LOG_SCALAR_COLUMNS"]
