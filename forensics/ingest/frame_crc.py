"""TFRecord CRCs checked in bulk: every length and payload CRC of a chunk of frames, with numpy.

Split from `tfrecord` (which walks the frames) because the checks are their own piece of maths:
one real CRC32C call per distinct length for the headers, and XOR folding for the payloads
(`_bad_strings`), so a clean chunk costs a few hundred CRC calls however many records it holds.
"""

from __future__ import annotations

import struct

import crc32c
import numpy as np

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC32C of it
_MASK_DELTA = 0xA282EAD8
# Records are XOR-folded into this many cells per payload length; see `_bad_strings`.
_CRC_CELLS = 64


def mask_crc(crc: int) -> int:
    """Apply TFRecord's CRC mask (rotate right 15, add a constant) to a raw CRC32C."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crcs(masked: np.ndarray) -> np.ndarray:
    """Undo `mask_crc` for a whole uint32 array at once."""
    rotated = masked.astype(np.uint32) - np.uint32(_MASK_DELTA)  # wraps mod 2**32
    return (rotated << np.uint32(15)) | (rotated >> np.uint32(17))


def unaligned_view(data: np.ndarray, dtype: str) -> np.ndarray:
    """View `data` (uint8) so that element i is the little-endian `dtype` value starting at byte i.

    Gathering from this view with an index array reads values at arbitrary byte offsets without
    building one index per byte.
    """
    width = np.dtype(dtype).itemsize
    count = max(len(data) - width + 1, 0)
    return np.ndarray(shape=(count,), dtype=dtype, buffer=data, strides=(1,))


def _fold_cells(data: np.ndarray, starts: np.ndarray, length: int,
                bounds: np.ndarray) -> np.ndarray:
    """XOR together the `length`-byte strings at `starts` per run: `bounds` are the first index of
    each run of `starts` sharing a cell. Returns a (len(bounds), length) uint8 array."""
    if length < 8:
        if length == 0:
            return np.zeros((len(bounds), 0), np.uint8)
        return np.bitwise_xor.reduceat(data[starts[:, None] + np.arange(length)], bounds, axis=0)
    words = unaligned_view(data, "<u8")
    full, rest = divmod(length, 8)
    folded_words = np.empty((len(bounds), full + (rest > 0)), np.uint64)
    for column in range(full):
        folded_words[:, column] = np.bitwise_xor.reduceat(words[starts + 8 * column], bounds)
    if rest:
        # The last word overlaps the previous one; only its top `rest` bytes are new.
        folded_words[:, full] = np.bitwise_xor.reduceat(words[starts + length - 8], bounds)
    folded = folded_words.view(np.uint8)
    if rest:
        folded = np.concatenate([folded[:, : 8 * full], folded[:, -rest:]], axis=1)
    return folded


def _stable_order(key: np.ndarray) -> np.ndarray:
    # numpy radix-sorts 16-bit keys, several times faster than its 64-bit stable sort.
    if len(key) and int(key.max()) < 1 << 16:
        key = key.astype(np.uint16)
    return np.argsort(key, kind="stable")


def _bad_strings(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray, stored: np.ndarray,
                 cells: np.ndarray) -> np.ndarray:
    """Sorted indices (into `starts`) of byte strings whose CRC32C differs from `stored`.

    CRC32C is affine over GF(2) for a fixed length L: crc(x) = lin(x) ^ crc(0^L). So for n strings
    of length L, XOR of their CRCs == crc(XOR of strings) ^ ((n + 1) % 2) * crc(0^L), and one real
    CRC call checks a whole cell of same-length strings. Corruption confined to one record is
    caught exactly when the record's own CRC would catch it; independent random corruptions of
    several records escape with probability ~2**-32, as with per-record CRCs. Only identical
    error patterns in two records of the same length cancel in the XOR; spreading records over
    `_CRC_CELLS` cells by a hash of their ordinal lets such a pair escape with probability
    1/_CRC_CELLS. A failing cell is re-checked record by record to find the exact record.
    """
    # Sorted by (length, cell), file order within each: one run of records per cell.
    key = lengths * _CRC_CELLS + cells
    order = _stable_order(key)
    sorted_lengths, sorted_key = lengths[order], key[order]
    bounds = np.r_[np.flatnonzero(np.r_[True, sorted_lengths[1:] != sorted_lengths[:-1]]),
                   len(order)]
    cell_bounds = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])  # has `bounds`
    sorted_starts, sorted_stored = starts[order], stored[order]
    suspects: list[np.ndarray] = []
    for first, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if end - first <= _CRC_CELLS:  # folding saves nothing here
            suspects.append(order[first:end])
            continue
        length = int(sorted_lengths[first])
        runs = cell_bounds[np.searchsorted(cell_bounds, first):np.searchsorted(cell_bounds, end)]
        local = runs - first
        folded = _fold_cells(data, sorted_starts[first:end], length, local)
        expected = np.bitwise_xor.reduceat(sorted_stored[first:end], local).tolist()
        run_ends = np.r_[runs[1:], end]
        odd = ((run_ends - runs) % 2).tolist()
        zero_crc = crc32c.crc32c(bytes(length))
        for run, (run_start, run_end) in enumerate(zip(runs.tolist(), run_ends.tolist())):
            parity_fix = 0 if odd[run] else zero_crc
            if crc32c.crc32c(folded[run].tobytes()) ^ parity_fix != expected[run]:
                suspects.append(order[run_start:run_end])
    if not suspects:
        return np.zeros(0, np.int64)
    return np.array(sorted(
        i for i in np.concatenate(suspects).tolist()
        if crc32c.crc32c(data[starts[i] : starts[i] + lengths[i]]) != int(stored[i])
    ), dtype=np.int64)


def _bad_headers(lengths: np.ndarray, stored_masked: np.ndarray) -> np.ndarray:
    """Sorted indices of frames whose stored length CRC is not the masked CRC32C of their length.

    The 8 header bytes are the length itself, so each distinct length is checked with one real
    CRC call and every header is compared with its length's CRC: an exact per-record check.
    """
    if int(lengths.max()) < 1 << 16:
        distinct = np.flatnonzero(np.bincount(lengths))
    else:
        distinct = np.unique(lengths)
    expected = np.array([mask_crc(crc32c.crc32c(struct.pack("<Q", length)))
                         for length in distinct.tolist()], np.uint32)
    if len(distinct) == 1:
        return np.flatnonzero(stored_masked != expected[0])
    return np.flatnonzero(expected[np.searchsorted(distinct, lengths)] != stored_masked)


def bad_frames(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
               first_record: int = 0) -> tuple[np.ndarray, int | None]:
    """Frames that fail a CRC: (indices with a bad payload CRC, index of the first bad length CRC).

    A frame whose length CRC holds has a trustworthy length, so the next frame starts where it
    says even when its payload is damaged: such a frame is skipped alone. The first bad length
    makes every later frame position meaningless, so payloads are checked only before it.
    """
    if not len(starts):
        return np.zeros(0, np.int64), None
    crc_words = unaligned_view(data, "<u4")
    ordinals = np.arange(first_record, first_record + len(starts), dtype=np.uint64)
    cells = ((ordinals * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(58)).astype(np.int64)
    bad_header = _bad_headers(lengths, crc_words[starts + 8])
    limit = int(bad_header[0]) if len(bad_header) else len(starts)
    payload_starts = starts[:limit] + HEADER_BYTES
    stored = unmask_crcs(crc_words[payload_starts + lengths[:limit]])
    bad_payload = _bad_strings(data, payload_starts, lengths[:limit], stored, cells[:limit])
    return bad_payload, (limit if limit < len(starts) else None)
