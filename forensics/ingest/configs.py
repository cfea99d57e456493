"""Config files (YAML, JSON, TOML, INI/CFG, Lightning `hparams.yaml`, yolov5 `opt.yaml`/`hyp.yaml`,
`args.json`, test-tube `meta_tags.csv`, MLflow `params/`) read into `SourceRead.config`.

YAML is parsed with `yaml.safe_load`. Lightning writes Python-tagged objects into hparams.yaml
(`!!python/object:...`), which safe_load refuses; such files are parsed again by `_InertLoader`, a
SafeLoader subclass that turns every unknown tag into the string `<tag>` — nothing is imported or
constructed. Files over `MAX_CONFIG_BYTES` are not parsed (the message names the limit).
The config stored is `config_intent.normalise(...)`: normalised intent keys plus the bounded raw
config under `raw`.
"""

from __future__ import annotations

import configparser
import csv
import io
import json
import tomllib
from pathlib import Path

import yaml

from forensics.ingest.config_intent import normalise
from forensics.ingest.discovery import FoundFile
from forensics.ingest.problems import InputProblem
from forensics.ingest.source import SourceRead

MAX_CONFIG_BYTES = 5 * 1024 * 1024


class _InertLoader(yaml.SafeLoader):
    """SafeLoader that reads unknown (Python) tags as inert strings instead of refusing the file."""


_InertLoader.add_multi_constructor("", lambda loader, suffix, node: f"<{node.tag}>")


def read_config(found: FoundFile) -> SourceRead:
    """A config file: parsed safely, normalised to intent, raw kept (bounded)."""
    name = found.path.name.lower()
    if found.size_bytes > MAX_CONFIG_BYTES:
        return _failed(found, "config_too_large", f"{found.display_path}: {found.size_bytes:,} bytes, over the "
                       f"{MAX_CONFIG_BYTES:,}-byte limit for configs (forensics.ingest.configs.MAX_CONFIG_BYTES); "
                       "not parsed")
    try:
        text = found.path.read_text(encoding="utf-8", errors="backslashreplace")
    except OSError as error:
        return _failed(found, "file_unreadable", f"{found.display_path}: cannot be read ({error.strerror or error})")
    problems: list[InputProblem] = []
    try:
        parsed, how = _parse(name, text, found, problems)
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
        try:
            return yaml.safe_load(text), "YAML"
        except yaml.constructor.ConstructorError:
            loader = _InertLoader(text)
            try:
                return loader.get_single_data(), "YAML (Python-tagged objects kept as inert strings)"
            finally:
                loader.dispose()
    if suffix == ".json" or name == "args":
        return json.loads(text), "JSON"
    if suffix == ".toml":
        return tomllib.loads(text), "TOML"
    if suffix == ".csv":  # test-tube meta_tags.csv: key,value rows
        rows = list(csv.reader(io.StringIO(text)))
        return {row[0]: _scalar(row[1]) for row in rows[1:] if len(row) >= 2}, "key,value CSV"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return {section: dict(parser[section]) for section in parser.sections()}, "INI"


def _scalar(text: str):
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def _detail(how: str, parsed: dict, intent: dict) -> str:
    stated = [key for key in ("optimizer", "scheduler", "base_lr", "epochs", "max_steps", "batch_size",
                              "gradient_accumulation_steps", "warmup_steps", "warmup_epochs", "warmup_ratio")
              if key in intent]
    detail = f"{how}, {len(parsed)} top-level keys"
    return detail + ("; intent: " + ", ".join(stated) if stated else "; no optimizer or schedule settings found")


def _failed(found: FoundFile, code: str, message: str) -> SourceRead:
    return SourceRead(found.display_path, found.kind, found.size_bytes, readable=False, records=0,
                      detail=message.split(": ", 1)[-1], problems=[InputProblem(code, found.display_path, message)])
