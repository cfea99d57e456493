"""Read metadata pickles (HF `training_args.bin`) without importing or running anything.

`pickle.load` imports every global a pickle names and calls it; `torch.load(weights_only=True)`
refuses anything outside its allow-list, which is every HF `TrainingArguments`. We only want the
field values, so this module walks the opcodes with `pickletools.genops` and keeps its own small
stack: a global becomes a symbolic `PickledGlobal(module, name)`, a call or instantiation becomes a
`PickledObject` record, and nothing is imported, instantiated or called. The result is plain data
(dicts, lists, str, numbers) in which each object shows up as `{"__class__": "...", "args": [...],
"state": {...}}`.

The machine is bounded: input size, stack size, memo size, nesting depth and output size all
have limits, and anything unexpected raises `InertPickleError` for the caller to report.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_PICKLE_BYTES = 64 * 1024 * 1024
MAX_STACK_ITEMS = 1_000_000
MAX_MEMO_ITEMS = 1_000_000
MAX_MARK_DEPTH = 1_000
MAX_OUTPUT_NODES = 2_000_000
MAX_OUTPUT_DEPTH = 200

# The first pickle of a legacy (pre-zip) torch.save file is this number; the object is the 4th.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_ZIP_MAGIC = b"PK\x03\x04"


class InertPickleError(Exception):
    """The pickle could not be walked: malformed, over a limit, or an opcode we do not handle."""


@dataclass(frozen=True)
class PickledGlobal:
    """A reference to `module.name` as written in the pickle; never imported."""

    module: str
    name: str

    @property
    def path(self) -> str:
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


class _SetItems(list):
    """A pickled set or frozenset, kept as a list because its members may be unhashable here."""


# Globals whose meaning is fixed by the language, so interpreting them is not executing them.
_DICT_CLASSES = {"collections.OrderedDict", "builtins.dict", "__builtin__.dict"}
_LIST_CLASSES = {"builtins.list", "__builtin__.list"}
_SET_CLASSES = {"builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset"}
_RECONSTRUCTORS = {"copyreg._reconstructor", "copy_reg._reconstructor"}
_TENSOR_REBUILDERS = {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
                      "torch._utils._rebuild_parameter"}


def _call_global(func: Any, args: Any) -> Any:
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
        return _SetItems(args[0] if args and isinstance(args[0], (list, tuple)) else [])
    if path == "_codecs.encode" and len(args) == 2 and isinstance(args[0], str):
        # Protocol-2 pickles spell bytes as encode(text, "latin1").
        try:
            return args[0].encode(str(args[1]))
        except (LookupError, UnicodeError):
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


def _hashable(key: Any) -> Any:
    try:
        hash(key)
        return key
    except TypeError:
        return repr(to_plain(key))


class _Machine:
    """One pass over one pickle's opcodes."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise InertPickleError("MARK expected but none on the stack")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def pop(self) -> Any:
        if not self.stack:
            raise InertPickleError("stack underflow")
        return self.stack.pop()

    def push(self, value: Any) -> None:
        if len(self.stack) >= MAX_STACK_ITEMS:
            raise InertPickleError(f"stack exceeds {MAX_STACK_ITEMS} items")
        self.stack.append(value)

    def remember(self, index: int) -> None:
        if len(self.memo) >= MAX_MEMO_ITEMS:
            raise InertPickleError(f"memo exceeds {MAX_MEMO_ITEMS} items")
        if not self.stack:
            raise InertPickleError("memo store with empty stack")
        self.memo[index] = self.stack[-1]

    def run(self, stream: io.BytesIO) -> Any:
        try:
            for opcode, arg, pos in pickletools.genops(stream):
                if self.step(opcode.name, arg):
                    return self.pop()
        except InertPickleError:
            raise
        except (ValueError, EOFError, UnicodeDecodeError, IndexError, TypeError, OverflowError) as err:
            # genops raises ValueError on truncated or malformed data.
            raise InertPickleError(f"malformed pickle: {err}") from None
        raise InertPickleError("pickle ended without STOP")

    def step(self, name: str, arg: Any) -> bool:  # noqa: C901 - one branch per opcode reads best
        """Apply one opcode; return True at STOP."""
        if name in _PUSH_ARG:
            self.push(arg)
        elif name == "NONE":
            self.push(None)
        elif name == "NEWTRUE":
            self.push(True)
        elif name == "NEWFALSE":
            self.push(False)
        elif name == "BYTEARRAY8":
            self.push(bytes(arg))
        elif name == "EMPTY_LIST":
            self.push([])
        elif name == "EMPTY_DICT":
            self.push({})
        elif name == "EMPTY_TUPLE":
            self.push(())
        elif name == "EMPTY_SET":
            self.push(_SetItems())
        elif name == "MARK":
            if len(self.marks) >= MAX_MARK_DEPTH:
                raise InertPickleError(f"nesting exceeds {MAX_MARK_DEPTH} marks")
            self.marks.append(self.stack)
            self.stack = []
        elif name == "LIST":
            self.push(self.pop_mark())
        elif name == "TUPLE":
            self.push(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            count = int(name[-1])
            if len(self.stack) < count:
                raise InertPickleError("stack underflow")
            items = tuple(self.stack[-count:])
            del self.stack[-count:]
            self.push(items)
        elif name == "DICT":
            items = self.pop_mark()
            self.push({_hashable(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})
        elif name == "FROZENSET":
            self.push(_SetItems(self.pop_mark()))
        elif name == "APPEND":
            value = self.pop()
            self._extend(self.stack[-1] if self.stack else None, [value])
        elif name == "APPENDS":
            items = self.pop_mark()
            self._extend(self.stack[-1] if self.stack else None, items)
        elif name == "ADDITEMS":
            items = self.pop_mark()
            self._extend(self.stack[-1] if self.stack else None, items)
        elif name == "SETITEM":
            value = self.pop()
            key = self.pop()
            self._set_items(self.stack[-1] if self.stack else None, [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            self._set_items(self.stack[-1] if self.stack else None, items)
        elif name == "POP":
            if self.stack:
                self.stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.push(self.stack[-1] if self.stack else self.pop())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.remember(int(arg))
        elif name == "MEMOIZE":
            self.remember(len(self.memo))
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg) not in self.memo:
                raise InertPickleError(f"memo key {arg} never stored")
            self.push(self.memo[int(arg)])
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            self.push(PickledGlobal(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            if not isinstance(module, str) or not isinstance(attr, str):
                raise InertPickleError("STACK_GLOBAL needs two strings")
            self.push(PickledGlobal(module, attr))
        elif name == "REDUCE":
            args = self.pop()
            func = self.pop()
            self.push(_call_global(func, args))
        elif name == "NEWOBJ":
            args = self.pop()
            cls = self.pop()
            self.push(_call_global(cls, args))
        elif name == "NEWOBJ_EX":
            kwargs, args, cls = self.pop(), self.pop(), self.pop()
            record = _call_global(cls, args)
            if isinstance(record, PickledObject):
                record.kwargs = kwargs if isinstance(kwargs, dict) else {"__kwargs__": kwargs}
            self.push(record)
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            self.push(_call_global(PickledGlobal(module, attr), self.pop_mark()))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise InertPickleError("OBJ without a class")
            self.push(_call_global(items[0], items[1:]))
        elif name == "BUILD":
            state = self.pop()
            target = self.stack[-1] if self.stack else None
            if isinstance(target, PickledObject):
                if isinstance(target.state, dict) and isinstance(state, dict):
                    target.state.update(state)
                else:
                    target.state = state
            # BUILD on a plain container (an OrderedDict's __dict__) carries nothing we keep.
        elif name in ("PERSID", "BINPERSID"):
            pid = arg if name == "PERSID" else self.pop()
            self.push(PickledObject(class_path="__persistent_id__", args=[pid]))
        elif name in ("EXT1", "EXT2", "EXT4"):
            self.push(PickledObject(class_path="__extension__", args=[arg]))
        elif name in ("PROTO", "FRAME"):
            pass
        elif name == "STOP":
            return True
        else:
            # NEXT_BUFFER / READONLY_BUFFER (out-of-band buffers) and anything newer.
            raise InertPickleError(f"unsupported opcode {name}")
        return False

    @staticmethod
    def _extend(target: Any, items: list) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, PickledObject):
            target.list_items.extend(items)
        else:
            raise InertPickleError(f"APPEND onto {type(target).__name__}")

    @staticmethod
    def _set_items(target: Any, items: list) -> None:
        pairs = zip(items[0::2], items[1::2])
        if isinstance(target, dict):
            for key, value in pairs:
                target[_hashable(key)] = value
        elif isinstance(target, PickledObject):
            for key, value in pairs:
                target.dict_items[_hashable(key)] = value
        else:
            raise InertPickleError(f"SETITEM onto {type(target).__name__}")


_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "UNICODE", "SHORT_BINUNICODE",
    "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
}


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


def inert_loads(data: bytes) -> Any:
    """Walk one pickle in `data` and return its content as plain data. Raises `InertPickleError`."""
    if len(data) > MAX_PICKLE_BYTES:
        raise InertPickleError(f"pickle is {len(data)} bytes, over the {MAX_PICKLE_BYTES}-byte limit")
    return to_plain(_Machine().run(io.BytesIO(data)))


def inert_load_file(path: Path, max_bytes: int = MAX_PICKLE_BYTES) -> Any:
    """Read a metadata pickle file inertly: a raw pickle, a torch zip (`*/data.pkl`) or legacy torch.save.

    Raises `OSError` when the file cannot be read and `InertPickleError` when it is not a pickle
    we can walk (including zip members that are too large).
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(4)
    if head == _ZIP_MAGIC:
        return inert_loads(_zip_data_pickle(path, max_bytes))
    if size > max_bytes:
        raise InertPickleError(f"file is {size} bytes, over the {max_bytes}-byte limit")
    data = path.read_bytes()
    stream = io.BytesIO(data)
    first = _Machine().run(stream)
    if first != _LEGACY_TORCH_MAGIC:
        return to_plain(first)
    # Legacy torch.save: magic, protocol version, sys info, then the object itself.
    for _ in range(2):
        _Machine().run(stream)
    return to_plain(_Machine().run(stream))


def _zip_data_pickle(path: Path, max_bytes: int) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist()
                       if info.filename == "data.pkl" or info.filename.endswith("/data.pkl")]
            if not members:
                raise InertPickleError("zip file has no data.pkl member (not a torch.save file)")
            member = min(members, key=lambda info: info.filename.count("/"))
            if member.file_size > max_bytes:
                raise InertPickleError(
                    f"{member.filename} is {member.file_size} bytes, over the {max_bytes}-byte limit")
            return archive.read(member)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise InertPickleError(f"bad zip file: {err}") from None
