"""Walk a run directory read-only and sort what is in it by kind.

The walk follows symbolic links (checkpoint folders are often links to bulk storage) but
remembers every real directory it entered, so a link loop is reported once and never walked
twice. Nothing here opens a file for writing or reads file contents beyond a name and a stat (and, to
tell a training log from a README, the first 64 KB of a `.txt`/`.out`/`.err` file in `find_runs`).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from forensics.ingest.problems import InputProblem

# Kinds of source. Readers are chosen by kind; the report lists every file with its kind.
TENSORBOARD = "tensorboard"
CHECKPOINT = "checkpoint"
HF_CHECKPOINT_DIR = "hf_checkpoint_dir"
TRAINING_ARGS = "training_args"
TRAINER_STATE = "trainer_state"
LOG = "log"
CONFIG = "config"
METRICS_TABLE = "metrics_table"
WEIGHTS = "weights"
MLFLOW_METRIC = "mlflow_metric"   # mlruns/<exp>/<run>/metrics/<key>: lines `timestamp value step`
MLFLOW_PARAMS = "mlflow_params"   # mlruns/<exp>/<run>/params/: one file per parameter, read as one config
OTHER = "other"

_CHECKPOINT_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".tar", ".pkl"}
_LOG_SUFFIXES = {".log", ".out", ".err", ".txt"}
_CONFIG_SUFFIXES = {".yaml", ".yml", ".json", ".toml", ".cfg", ".ini"}
_METRICS_SUFFIXES = {".csv", ".tsv", ".jsonl"}
_HF_CHECKPOINT_DIR = re.compile(r"checkpoint-\d+")
_HF_CHECKPOINT_MARKERS = {"optimizer.pt", "scheduler.pt", "trainer_state.json", "pytorch_model.bin",
                          "model.safetensors", "adapter_model.safetensors", "adapter_model.bin", "rng_state.pth"}


@dataclass(frozen=True)
class FoundFile:
    """One source found in the run directory."""

    path: Path          # absolute path, used to read
    display_path: str   # posix path relative to the run dir, used in every report
    kind: str
    size_bytes: int
    modified_time: float
    members: tuple[str, ...] = ()  # for a checkpoint folder: the display paths inside it


@dataclass
class Discovery:
    """What the walk found, in a stable order, plus what it could not look at."""

    root: Path
    files: list[FoundFile] = field(default_factory=list)
    problems: list[InputProblem] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[FoundFile]:
        """Found files of one kind, in walk order."""
        return [found for found in self.files if found.kind == kind]


def discover(root: Path, follow_external_links: bool = False) -> Discovery:
    """Walk `root` (a directory) and classify every file below it.

    A symbolic link whose target lies outside `root` is reported and not followed unless
    `follow_external_links` is set: the report must only quote what the run dir holds.
    """
    root = root.resolve()
    discovery = Discovery(root=root)
    entered: set[tuple[int, int]] = set()
    _walk(root, root, discovery, entered, follow_external_links)
    return discovery


def classify(name: str) -> str:
    """The kind of a file from its name alone (contents are the readers' business)."""
    lowered = name.lower()
    suffix = os.path.splitext(lowered)[1]
    if "tfevents" in lowered:
        return TENSORBOARD
    if lowered == "training_args.bin":
        return TRAINING_ARGS
    if lowered == "trainer_state.json":
        return TRAINER_STATE
    if suffix == ".safetensors":
        return WEIGHTS
    if suffix in _CHECKPOINT_SUFFIXES:
        return CHECKPOINT
    if suffix in _METRICS_SUFFIXES:
        return METRICS_TABLE
    if suffix in _CONFIG_SUFFIXES or lowered in ("hparams", "args", "config"):
        return CONFIG
    if suffix in _LOG_SUFFIXES or lowered in ("stdout", "stderr", "output", "log"):
        return LOG
    return OTHER


def _walk(directory: Path, root: Path, discovery: Discovery, entered: set[tuple[int, int]],
          follow_external_links: bool) -> None:
    try:
        directory_stat = directory.stat()
    except OSError as error:
        discovery.problems.append(_unreadable(directory, root, error))
        return
    identity = (directory_stat.st_dev, directory_stat.st_ino)
    if identity in entered:
        discovery.problems.append(InputProblem(
            code="symlink_loop", path=_display(directory, root),
            message=f"{_display(directory, root)}: a symbolic link leads back to a folder already walked; not walked again",
            severity="info"))
        return
    entered.add(identity)
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        discovery.problems.append(_unreadable(directory, root, error))
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            entry_stat = path.stat()  # follows links; a broken link raises
        except OSError as error:
            discovery.problems.append(_unreadable(path, root, error, broken_link=entry.is_symlink()))
            continue
        if entry.is_symlink() and not follow_external_links and not _inside(path, root):
            discovery.problems.append(_outside_link(path, root, "the run directory; not read (--follow-links reads it)"))
            continue
        if stat.S_ISDIR(entry_stat.st_mode):
            if _is_hf_checkpoint_dir(path):
                _add_hf_checkpoint_dir(path, root, discovery, entry_stat)
            elif _is_mlflow_run_part(path, "params"):
                _add_mlflow_params_dir(path, root, discovery, entry_stat)
            else:
                _walk(path, root, discovery, entered, follow_external_links)
        elif stat.S_ISREG(entry_stat.st_mode):
            in_metrics = any(_is_mlflow_run_part(folder, "metrics") for folder in list(path.parents)[:4])
            kind = MLFLOW_METRIC if in_metrics else classify(entry.name)
            discovery.files.append(FoundFile(path, _display(path, root), kind,
                                             entry_stat.st_size, entry_stat.st_mtime))
        else:
            discovery.problems.append(InputProblem(
                code="not_a_regular_file", path=_display(path, root),
                message=f"{_display(path, root)}: not a regular file (socket, fifo or device); not read",
                severity="info"))


def _is_mlflow_run_part(path: Path, part: str) -> bool:
    """`path` is the `metrics/` or `params/` folder of an MLflow file-store run (next to its meta.yaml).

    Metric keys with slashes (`train/loss`) are nested folders below `metrics/`.
    """
    return path.name == part and (path.parent / "meta.yaml").is_file()


def _add_mlflow_params_dir(path: Path, root: Path, discovery: Discovery, dir_stat: os.stat_result) -> None:
    """An MLflow run's `params/` folder is one config made of one small file per parameter."""
    members = tuple(_display(member, root) for member in sorted(path.iterdir()) if member.is_file())
    size = sum(member.stat().st_size for member in path.iterdir() if member.is_file())
    discovery.files.append(FoundFile(path, _display(path, root), MLFLOW_PARAMS, size, dir_stat.st_mtime, members))


def _is_hf_checkpoint_dir(path: Path) -> bool:
    if not _HF_CHECKPOINT_DIR.fullmatch(path.name):
        return False
    try:
        return any(entry.name in _HF_CHECKPOINT_MARKERS for entry in os.scandir(path))
    except OSError:
        return False


def _add_hf_checkpoint_dir(path: Path, root: Path, discovery: Discovery, dir_stat: os.stat_result) -> None:
    """An HF `checkpoint-N/` folder is one checkpoint made of several files."""
    members = []
    total_size = 0
    for member in sorted(path.rglob("*")):
        if member.is_file():
            members.append(_display(member, root))
            total_size += member.stat().st_size
    discovery.files.append(FoundFile(path, _display(path, root), HF_CHECKPOINT_DIR, total_size,
                                     dir_stat.st_mtime, tuple(members)))


def _outside_link(path: Path, root: Path, consequence: str) -> InputProblem:
    shown = _display(path, root)
    return InputProblem(code="link_outside_run", path=shown, severity="info",
                        message=f"{shown}: symbolic link to {os.path.realpath(path)}, outside {consequence}")


def _inside(path: Path, root: Path) -> bool:
    resolved = Path(os.path.realpath(path))
    return resolved == root or root in resolved.parents


def _display(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _unreadable(path: Path, root: Path, error: OSError, broken_link: bool = False) -> InputProblem:
    shown = _display(path, root)
    if error.errno == errno.ELOOP:  # a link that leads to itself
        return InputProblem(code="symlink_loop", path=shown, message=f"{shown}: symbolic link loop; not followed")
    if broken_link:
        return InputProblem(code="broken_link", path=shown,
                            message=f"{shown}: symbolic link whose target cannot be read ({error.strerror})")
    return InputProblem(code="file_unreadable", path=shown, message=f"{shown}: cannot be read ({error.strerror or error})")


# Kinds whose presence directly in a folder makes that folder a run for `forensics sweep`. Configs alone
# do not (a folder of YAML is a config repository). A `.txt`/`.out`/`.err` file counts only when the log
# formats recognise its first lines (`looks_like_training_log`): READMEs and requirements files stay out
# because no format reads a metric series from them, not because of their suffix.
_RUN_KINDS = {TENSORBOARD, CHECKPOINT, TRAINING_ARGS, TRAINER_STATE, LOG, METRICS_TABLE, WEIGHTS}
_SNIFFED_LOG_SUFFIXES = (".txt", ".out", ".err")
SNIFF_LOG_BYTES = 65536
# A training log repeats its metrics, and they make a good share of its lines even after a start-up
# preamble (Megatron's argument dump, HF warnings); prose that mentions an LR here and there does not.
SNIFF_REPEATS = 3
SNIFF_SHARE = 0.2


def looks_like_training_log(path: Path) -> bool:
    """In the first 64 KB of `path`, one metric tag is read on 3+ lines and 20%+ of the lines are read.

    Lines are cleaned as the log reader cleans them (ANSI colours, rank prefixes, `\\r` redraws). An
    unreadable file is not a log here; if its folder is a run for other reasons, the reader reports it.
    """
    from collections import Counter

    from forensics.ingest.logs.clean import split_rank, strip_ansi
    from forensics.ingest.logs.formats import parse_line

    try:
        with open(path, "rb") as handle:
            head = handle.read(SNIFF_LOG_BYTES)
    except OSError:
        return False
    if b"\x00" in head:
        return False
    tags: Counter[str] = Counter()
    lines = [line for line in head.decode("utf-8", errors="backslashreplace").replace("\r", "\n").split("\n")
             if line.strip()]
    recognised = 0
    for line in lines:
        parsed = parse_line(split_rank(strip_ansi(line))[1])
        if parsed is not None and parsed[1].values:
            recognised += 1
            tags.update(list(parsed[1].values))  # count tags, not values
    return bool(tags) and max(tags.values()) >= SNIFF_REPEATS and recognised >= SNIFF_SHARE * len(lines)


def _counts_as_run_artifact(entry: os.DirEntry) -> bool:
    """A file whose presence makes its folder a run (a sniffed log only when its lines are recognised)."""
    if classify(entry.name) not in _RUN_KINDS:
        return False
    if entry.name.lower().endswith(_SNIFFED_LOG_SUFFIXES):
        return looks_like_training_log(Path(entry.path))
    return True


@dataclass
class FoundRuns:
    """The run directories below a sweep root, in walk order, plus what the walk could not look at."""

    root: Path
    runs: list[Path] = field(default_factory=list)   # as walked (a link keeps its own path)
    problems: list[InputProblem] = field(default_factory=list)


def find_runs(root: Path, follow_external_links: bool = False) -> FoundRuns:
    """Every directory under `root` that directly holds run artifacts and is not inside a run already found.

    The walk is top-down, so `root` itself, when it holds artifacts, is the one run. Like `discover`, it
    remembers every real folder it entered (a link loop is reported once) and does not follow links out
    of `root` unless asked. Nothing is opened but the first 64 KB of `.txt`/`.out`/`.err` files, to tell a
    training log from a README.
    """
    found = FoundRuns(root=root.resolve())
    _find_runs(found.root, found.root, found, set(), follow_external_links)
    return found


# Sub-folders training scripts put a run's artifacts in: a folder holding one of these (with
# artifacts inside) is the run, not each sub-folder on its own.
_ARTIFACT_SUBFOLDERS = {"tb", "tensorboard", "tb_logs", "events", "logs", "log", "checkpoints", "checkpoint", "ckpt",
                        "ckpts", "weights", "metrics", "artifacts"}


def _holds_run_artifacts(entries: list[os.DirEntry]) -> bool:
    for entry in entries:
        path = Path(entry.path)
        try:
            if entry.is_file():
                if _counts_as_run_artifact(entry):
                    return True
            elif entry.is_dir() and (_is_hf_checkpoint_dir(path) or _is_mlflow_run_part(path, "metrics")):
                return True
            elif entry.is_dir() and entry.name.lower() in _ARTIFACT_SUBFOLDERS and _has_artifact_file(path):
                return True
        except OSError:
            continue
    return False


def _has_artifact_file(folder: Path) -> bool:
    """An artifact directly in `folder` (event files in tb/, checkpoints in checkpoints/, ...)."""
    try:
        return any(entry.is_file() and _counts_as_run_artifact(entry) for entry in os.scandir(folder))
    except OSError:
        return False


def _find_runs(directory: Path, root: Path, found: FoundRuns, entered: set[tuple[int, int]],
               follow_external_links: bool) -> None:
    try:
        directory_stat = directory.stat()
        identity = (directory_stat.st_dev, directory_stat.st_ino)
        if identity in entered:
            shown = _display(directory, root)
            found.problems.append(InputProblem(
                code="symlink_loop", path=shown, severity="info",
                message=f"{shown}: a symbolic link leads back to a folder already walked; not walked again"))
            return
        entered.add(identity)
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        found.problems.append(_unreadable(directory, root, error))
        return
    if _holds_run_artifacts(entries):
        found.runs.append(directory)
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            is_folder = stat.S_ISDIR(path.stat().st_mode)
        except OSError as error:
            if entry.is_symlink():
                found.problems.append(_unreadable(path, root, error, broken_link=True))
            continue
        if not is_folder:
            continue
        if entry.is_symlink() and not follow_external_links and not _inside(path, root):
            found.problems.append(_outside_link(path, root, "the sweep root; not walked (--follow-links walks it)"))
            continue
        _find_runs(path, root, found, entered, follow_external_links)
