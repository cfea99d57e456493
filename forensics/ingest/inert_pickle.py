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

import _compat_pickle  # name tables only: how Python 2 spelled stdlib globals
import io
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

from forensics.ingest.inert_records import (
    InertPickleError, PickledGlobal, PickledObject, SetItems, call_global, hashable_key, to_plain,
)

__all__ = ["InertPickleError", "inert_load_file", "inert_loads", "to_plain"]

MAX_PICKLE_BYTES = 64 * 1024 * 1024
MAX_STACK_ITEMS = 1_000_000
MAX_MEMO_ITEMS = 1_000_000
MAX_MARK_DEPTH = 1_000

# The first pickle of a legacy (pre-zip) torch.save file is this number; the object is the 4th.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_ZIP_MAGIC = b"PK\x03\x04"


class _Machine:
    """One pass over one pickle's opcodes."""

    def __init__(self) -> None:
        self.stack: list[Any] = []
        self.marks: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.protocol = 0  # protocols 0 and 1 have no PROTO opcode

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
        """Walk opcodes up to STOP and return the top of the stack (machine objects, not plain)."""
        try:
            with warnings.catch_warnings():
                # pickletools warns on odd escapes in protocol-0 strings; the bytes are still read.
                warnings.simplefilter("ignore", DeprecationWarning)
                for opcode, arg, _ in pickletools.genops(stream):
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
            self.push(SetItems())
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
            self.push({hashable_key(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)})
        elif name == "FROZENSET":
            self.push(SetItems(self.pop_mark()))
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
            self.push(self.global_ref(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = self.pop(), self.pop()
            if not isinstance(module, str) or not isinstance(attr, str):
                raise InertPickleError("STACK_GLOBAL needs two strings")
            self.push(self.global_ref(module, attr))
        elif name == "REDUCE":
            args = self.pop()
            func = self.pop()
            self.push(call_global(func, args))
        elif name == "NEWOBJ":
            args = self.pop()
            cls = self.pop()
            self.push(call_global(cls, args))
        elif name == "NEWOBJ_EX":
            kwargs, args, cls = self.pop(), self.pop(), self.pop()
            record = call_global(cls, args)
            if isinstance(record, PickledObject):
                record.kwargs = kwargs if isinstance(kwargs, dict) else {"__kwargs__": kwargs}
            self.push(record)
        elif name == "INST":
            module, _, attr = str(arg).partition(" ")
            self.push(call_global(self.global_ref(module, attr), self.pop_mark()))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise InertPickleError("OBJ without a class")
            self.push(call_global(items[0], items[1:]))
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
        elif name == "PROTO":
            self.protocol = int(arg)
        elif name == "FRAME":
            pass
        elif name == "STOP":
            return True
        else:
            # NEXT_BUFFER / READONLY_BUFFER (out-of-band buffers) and anything newer.
            raise InertPickleError(f"unsupported opcode {name}")
        return False

    def global_ref(self, module: str, name: str) -> PickledGlobal:
        """A symbolic global, with Python 2 spellings mapped as `pickle` does below protocol 3."""
        if self.protocol < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        return PickledGlobal(module, name)

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
                target[hashable_key(key)] = value
        elif isinstance(target, PickledObject):
            for key, value in pairs:
                target.dict_items[hashable_key(key)] = value
        else:
            raise InertPickleError(f"SETITEM onto {type(target).__name__}")


_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
    "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "UNICODE", "SHORT_BINUNICODE",
    "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT",
}


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
