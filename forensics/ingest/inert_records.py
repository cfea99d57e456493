"""The plain-data records the inert unpickler builds in place of objects.

A pickle's globals become `PickledGlobal`s and its calls become `PickledObject`s; `to_plain` then
turns the result into JSON-able data. A few globals whose meaning is fixed by the language
(`collections.OrderedDict`, `builtins.set`, `_codecs.encode`, torch's tensor rebuild functions)
are *interpreted* here as plain containers or tensor summaries, still without importing or
calling anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_OUTPUT_NODES = 2_000_000
MAX_OUTPUT_DEPTH = 200


class InertPickleError(Exception):
    """The pickle could not be walked: malformed, over a limit, or an opcode we do not handle."""


@dataclass(frozen=True)
class PickledGlobal:
    """A reference to `module.name` as written in the pickle; never imported."""

    module: str
    name: str

    @property
    def path(self) -> str:
        """Dotted `module.name`, as it would be imported (it is not)."""
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class PickledObject:
    """What a REDUCE / NEWOBJ / INST / OBJ / BUILD would have produced, as a record."""

    class_path: str
    args: list = field(default_factory=list)
    kwargs: dict | None = None
    state: Any = None
    dict_items: dict = field(default_factory=dict)   # SETITEM(S) onto the object
    list_items: list = field(default_factory=list)   # APPEND(S) onto the object


class SetItems(list):
    """A pickled set or frozenset, kept as a list because its members may be unhashable here."""


# Globals whose meaning is fixed by the language, so interpreting them is not executing them.
_DICT_CLASSES = {"collections.OrderedDict", "builtins.dict"}
_LIST_CLASSES = {"builtins.list"}
_SET_CLASSES = {"builtins.set", "builtins.frozenset"}
_BYTES_CLASSES = {"builtins.bytes", "builtins.bytearray"}
_RECONSTRUCTORS = {"copyreg._reconstructor"}
_TEXT_CODECS = {"latin1", "latin-1", "ascii", "utf-8", "utf8"}
_TENSOR_REBUILDERS = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
                      "torch._utils._rebuild_parameter"}


def call_global(func: Any, args: Any) -> Any:
    """Return the record (or plain value) standing for `func(*args)` without calling anything."""
    if not isinstance(func, PickledGlobal):
        return PickledObject(class_path="<call of non-global>", args=[func, args])
    args = list(args) if isinstance(args, (tuple, list)) else [args]
    path = func.path
    if path in _DICT_CLASSES and not args:
        return {}
    if path in _LIST_CLASSES and not args:
        return []
    if path in _SET_CLASSES:
        return SetItems(args[0] if args and isinstance(args[0], (list, tuple)) else [])
    if path in _BYTES_CLASSES and (not args or isinstance(args[0], (bytes, list))):
        return bytes(args[0]) if args and all(isinstance(b, int) and 0 <= b < 256 for b in args[0]) else b""
    if path == "_codecs.encode" and len(args) == 2 and isinstance(args[0], str) and args[1] in _TEXT_CODECS:
        # Protocol-2 pickles spell bytes as encode(text, "latin1"). Other codec names are not
        # looked up: a lookup can import an `encodings` module named by the pickle.
        try:
            return args[0].encode(args[1])
        except UnicodeError:
            pass
    if path in _RECONSTRUCTORS and args and isinstance(args[0], PickledGlobal):
        return PickledObject(class_path=args[0].path, args=args[2:3])
    if path in _TENSOR_REBUILDERS and args:
        storage, size = args[0], args[2] if len(args) > 2 else None
        storage_type = None
        if isinstance(storage, PickledObject) and storage.args and isinstance(storage.args[0], tuple):
            pid = storage.args[0]
            storage_type = pid[1].path if len(pid) > 1 and isinstance(pid[1], PickledGlobal) else None
        shape = list(size) if isinstance(size, (tuple, list)) else None
        return PickledObject(class_path="torch.Tensor", kwargs={"storage": storage_type, "shape": shape})
    return PickledObject(class_path=path, args=args)


def hashable_key(key: Any) -> Any:
    """`key` itself when hashable, else a text form (a list used as a dict key in a record)."""
    try:
        hash(key)
        return key
    except TypeError:
        return repr(to_plain(key))


def to_plain(value: Any) -> Any:
    """Turn machine output into JSON-able plain data (records become `{"__class__": ...}` dicts)."""
    return _Plainer().convert(value, 0)


class _Plainer:
    def __init__(self) -> None:
        self.nodes = 0
        self.active: set[int] = set()

    def convert(self, value: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_OUTPUT_NODES:
            # Shared references can make a small pickle expand exponentially.
            raise InertPickleError(f"pickle expands to more than {MAX_OUTPUT_NODES} values")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (bytes, bytearray)):
            return {"__bytes__": len(value)}
        if isinstance(value, PickledGlobal):
            return {"__global__": value.path}
        if depth >= MAX_OUTPUT_DEPTH:
            return "<nested too deep>"
        if id(value) in self.active:
            return "<recursive reference>"
        self.active.add(id(value))
        try:
            return self._convert_container(value, depth + 1)
        finally:
            self.active.discard(id(value))

    def _convert_container(self, value: Any, depth: int) -> Any:
        if isinstance(value, (list, tuple)):
            return [self.convert(item, depth) for item in value]
        if isinstance(value, dict):
            return {_key_text(key): self.convert(item, depth) for key, item in value.items()}
        if isinstance(value, PickledObject):
            if value.class_path == "__persistent_id__":
                return {"__persistent_id__": self.convert(value.args, depth)}
            record: dict[str, Any] = {"__class__": value.class_path, "args": self.convert(value.args, depth)}
            if len(value.args) == 1 and (value.args[0] is None or isinstance(value.args[0], (bool, int, float, str))):
                # Enums (SchedulerType("linear")) pickle as a call with their value as the one argument.
                record["value"] = value.args[0]
            if value.kwargs is not None:
                record["kwargs"] = self.convert(value.kwargs, depth)
            if value.state is not None:
                record["state"] = self.convert(value.state, depth)
            if value.dict_items:
                record["items"] = self.convert(value.dict_items, depth)
            if value.list_items:
                record["list"] = self.convert(value.list_items, depth)
            return record
        return repr(value)


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return str(key)
    if isinstance(key, PickledGlobal):
        return key.path
    if isinstance(key, PickledObject):
        return f"<{key.class_path}>"
    return str(key)

