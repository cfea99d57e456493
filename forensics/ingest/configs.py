"""Config files (YAML, JSON, TOML, INI/CFG, Lightning `hparams.yaml`, yolov5 `opt.yaml`/`hyp.yaml`,
`args.json`, test-tube `meta_tags.csv`, MLflow `params/`) read into `SourceRead.config`.

YAML is parsed with a bounded `yaml.SafeLoader` (`forensics.ingest.safe_parse`). Lightning writes
Python-tagged objects into hparams.yaml (`!!python/object:...`), which SafeLoader refuses; such files
are parsed again by a SafeLoader subclass that turns every unknown tag into the string `<tag>` —
nothing is imported or constructed, and tags that would run code under an unsafe loader are
reported (`config_unsafe_tag`). Files over `MAX_CONFIG_BYTES`, documents nested deeper than
`MAX_NESTING_DEPTH` or YAML expanding past `MAX_YAML_NODES` are not parsed (`forensics.ingest.limits`;
the message names the limit and its environment variable).
The config stored is `config_intent.normalise(...)`: normalised intent keys plus the bounded raw
config under `raw`.
"""

from __future__ import annotations

import configparser
import csv
import io
import tomllib
from pathlib import Path

import yaml

from forensics.ingest.config_intent import normalise
from forensics.ingest.discovery import FoundFile
from forensics.ingest.limits import MAX_CONFIG_BYTES
from forensics.ingest.problems import InputProblem
from forensics.ingest.safe_parse import ParseLimit, load_json, load_toml, load_yaml, scalar_from_text
from forensics.ingest.source import SourceRead


def read_config(found: FoundFile) -> SourceRead:
    """A config file: parsed safely, normalised to intent, raw kept (bounded)."""
    name = found.path.name.lower()
    limit = MAX_CONFIG_BYTES.value()
    if found.size_bytes > limit:
        return _failed(found, "config_too_large", f"{found.display_path}: {found.size_bytes:,} bytes, over the "
                       f"{limit:,}-byte limit for configs; not parsed ({MAX_CONFIG_BYTES.hint()})")
    try:
        text = found.path.read_text(encoding="utf-8", errors="backslashreplace")
    except OSError as error:
        return _failed(found, "file_unreadable", f"{found.display_path}: cannot be read ({error.strerror or error})")
    problems: list[InputProblem] = []
    try:
        parsed, how = _parse(name, text, found, problems)
    except ParseLimit as error:
        return _failed(found, f"config_{error.code}", f"{found.display_path}: {error}")
    except (ValueError, yaml.YAMLError, tomllib.TOMLDecodeError, configparser.Error, csv.Error) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        return _failed(found, "config_unparsable", f"{found.display_path}: not a valid config ({first_line})")
    if not isinstance(parsed, dict):
        kind = type(parsed).__name__ if parsed is not None else "empty"
        return SourceRead(found.display_path, found.kind, found.size_bytes, readable=True, records=0,
                          detail=f"{how}: {kind} document, no settings", problems=problems)
    framework = "yolov5" if name in ("opt.yaml", "hyp.yaml") else None
    intent = normalise(parsed, framework)
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=True, records=len(parsed),
                      detail=_detail(how, parsed, intent), problems=problems, config=intent)


def config_from_values(found: FoundFile, values: dict, how: str) -> SourceRead:
    """A config already read as key -> value (MLflow params); normalised like any other."""
    intent = normalise(values)
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=True, records=len(values),
                      detail=_detail(how, values, intent), config=intent)


def _parse(name: str, text: str, found: FoundFile, problems: list[InputProblem]):
    suffix = Path(name).suffix
    if suffix in (".yaml", ".yml") or name in ("hparams", "config"):
        parsed, python_tags = load_yaml(text)
        for tag in sorted(set(python_tags))[:5]:
            problems.append(InputProblem(
                "config_unsafe_tag", found.display_path,
                f"{found.display_path}: YAML tag {tag} would import or run code under an unsafe loader; read as the "
                f"inert string '<{tag}>', nothing was run", locator=f"tag {tag}"))
        if _has_inert_tags(parsed):
            return parsed, "YAML (Python-tagged objects kept as inert strings)"
        return parsed, "YAML"
    if suffix == ".json" or name == "args":
        return load_json(text), "JSON"
    if suffix == ".toml":
        return load_toml(text), "TOML"
    if suffix == ".csv":  # test-tube meta_tags.csv: key,value rows
        rows = list(csv.reader(io.StringIO(text)))
        return {row[0]: scalar_from_text(row[1]) for row in rows[1:] if len(row) >= 2}, "key,value CSV"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {section: dict(parser[section]) for section in parser.sections()}, "INI"


def _has_inert_tags(parsed, budget: int = 5000) -> bool:
    """Whether a parsed YAML document holds `<tag:...>` strings (bounded, iterative walk)."""
    pending = [parsed]
    while pending and budget > 0:
        budget -= 1
        item = pending.pop()
        if isinstance(item, str) and item.startswith("<tag:"):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False



def _detail(how: str, parsed: dict, intent: dict) -> str:
    stated = [key for key in ("optimizer", "scheduler", "base_lr", "epochs", "max_steps", "batch_size",
                              "gradient_accumulation_steps", "warmup_steps", "warmup_epochs", "warmup_ratio")
              if key in intent]
    detail = f"{how}, {len(parsed)} top-level keys"
    return detail + ("; intent: " + ", ".join(stated) if stated else "; no optimizer or schedule settings found")


def _failed(found: FoundFile, code: str, message: str) -> SourceRead:
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                      detail=message.split(": ", 1)[-1], problems=[InputProblem(code, found.display_path, message)])
