"""Count values and non-finite values in weights: torch tensors and `.safetensors` files.

Tensors are scanned in slices so a memory-mapped multi-GB tensor never needs a full-size
boolean mask. `.safetensors` files are read by hand (8-byte little-endian header length, a JSON
header, then raw little-endian data), so reading them needs no extra package.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from forensics.ingest.tensors import is_tensor

_SLICE_VALUES = 1 << 24
MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024

# safetensors dtype names -> (numpy dtype of the raw bytes, name of the torch dtype to view them as;
# a name, so that torch is imported only when such a tensor is met)
_SAFETENSORS_FLOATS = {
    "F64": (np.float64, None),
    "F32": (np.float32, None),
    "F16": (np.float16, None),
    "BF16": (np.uint16, "bfloat16"),
    "F8_E4M3": (np.uint8, "float8_e4m3fn"),
    "F8_E5M2": (np.uint8, "float8_e5m2"),
}


@dataclass
class WeightCount:
    """Running totals over the tensors of one model state."""

    tensors: int = 0
    values: int = 0
    nonfinite_values: int = 0
    nonfinite_tensors: int = 0

    def add(self, values: int, nonfinite: int) -> None:
        """Count one tensor of `values` values, `nonfinite` of them NaN / inf."""
        self.tensors += 1
        self.values += values
        self.nonfinite_values += nonfinite
        self.nonfinite_tensors += 1 if nonfinite else 0


def iter_tensors(value: Any, depth: int = 0) -> Iterator[Any]:
    """Every torch tensor inside nested dicts / lists / tuples (a model state may be nested)."""
    if is_tensor(value):
        yield value
    elif depth < 8 and isinstance(value, dict):
        for item in value.values():
            yield from iter_tensors(item, depth + 1)
    elif depth < 8 and isinstance(value, (list, tuple)):
        for item in value:
            yield from iter_tensors(item, depth + 1)


def count_nonfinite(tensor: Any) -> int:
    """NaN and +-inf values in a torch tensor; 0 for integer / bool tensors."""
    import torch  # already imported by whoever made the tensor

    if not (tensor.is_floating_point() or tensor.is_complex()):
        return 0
    if tensor.layout != torch.strided or tensor.device.type == "meta":
        return 0
    flat = tensor.reshape(-1)
    if flat.dtype in (getattr(torch, "float8_e4m3fn", None), getattr(torch, "float8_e5m2", None)):
        flat = flat.float()  # isfinite has no float8 kernel on every build
    total = 0
    for start in range(0, flat.numel(), _SLICE_VALUES):
        piece = flat[start:start + _SLICE_VALUES]
        total += int(piece.numel() - torch.isfinite(piece).sum().item())
    return total


def count_model_state(state: Any) -> WeightCount:
    """Totals over every tensor in a (possibly nested) model state."""
    counts = WeightCount()
    for tensor in iter_tensors(state):
        counts.add(tensor.numel(), count_nonfinite(tensor))
    return counts


class SafetensorsError(Exception):
    """The file does not follow the safetensors layout."""


def count_safetensors(path: Path) -> WeightCount:
    """Totals over every tensor of a `.safetensors` file, read through a read-only memory map.

    Raises `OSError` when the file cannot be read and `SafetensorsError` when it is malformed.
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise SafetensorsError("shorter than the 8-byte header length")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(MAX_SAFETENSORS_HEADER_BYTES, size - 8):
            raise SafetensorsError(f"header length {header_len} does not fit the {size}-byte file")
        try:
            header = json.loads(handle.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SafetensorsError(f"header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    data_start = 8 + header_len
    counts = WeightCount()
    raw = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start) if size > data_start else None
    for name, entry in header.items():
        if name == "__metadata__" or not isinstance(entry, dict):
            continue
        try:
            begin, end = (int(x) for x in entry["data_offsets"])
            shape = [int(x) for x in entry["shape"]]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"tensor {name!r} has no usable data_offsets/shape") from None
        numel = int(np.prod(shape)) if shape else 1
        if begin < 0 or end < begin or data_start + end > size:
            raise SafetensorsError(f"tensor {name!r} lies outside the file")
        nonfinite = 0
        kind = _SAFETENSORS_FLOATS.get(str(entry.get("dtype")))
        if kind is not None and raw is not None and end > begin:
            nonfinite = _count_raw(raw[begin:end], *kind)
        counts.add(numel, nonfinite)
    return counts


def _count_raw(raw: np.ndarray, np_dtype: Any, torch_view_name: str | None) -> int:
    itemsize = np.dtype(np_dtype).itemsize
    usable = (raw.size // itemsize) * itemsize
    values = raw[:usable].view(np.dtype(np_dtype).newbyteorder("<"))
    torch_view = None
    if torch_view_name is not None:
        import torch  # bfloat16 / float8 only

        torch_view = getattr(torch, torch_view_name, None)
    if torch_view is None:
        total = 0
        for start in range(0, values.size, _SLICE_VALUES):
            piece = values[start:start + _SLICE_VALUES]
            total += int(piece.size - np.isfinite(piece).sum())
        return total
    # bfloat16 / float8 have no numpy dtype: copy the bits slice by slice into torch and view them.
    total = 0
    for start in range(0, values.size, _SLICE_VALUES):
        bits = torch.from_numpy(np.array(values[start:start + _SLICE_VALUES]))
        total += count_nonfinite(bits.view(torch_view))
    return total
