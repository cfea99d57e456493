"""Apply the per-step LR updates torch's chainable schedulers make, in torch's own float order.

torch's chainable `get_lr` forms update the LR in place from its previous value; each update is
one of four shapes (`lr` is the optimizer's current LR, `a`/`b` numbers known before the replay):

- `MUL`:    lr * a                  (StepLR, MultiStepLR, ConstantLR, LinearLR, ExponentialLR,
                                     PolynomialLR; "unchanged" is lr * 1.0, skipped)
- `AFFINE`: a * (lr - b) + b        (CosineAnnealingLR with eta_min = b != 0)
- `ADD`:    lr + a                  (CosineAnnealingLR's step after each trough)
- `SET`:    a                       (schedules torch computes in closed form: OneCycleLR, ...)

`apply_updates` turns a sequence of updates into the LR after each one. Runs of `MUL` and `ADD`
use `np.multiply.accumulate` / `np.add.accumulate`, which evaluate strictly left to right, so the
result is bit for bit the sequence of Python float operations torch performs. Short mixed runs
go through a plain Python loop (also exact). The one approximation is in long `AFFINE` runs (a
cosine towards eta_min = b > 0), evaluated as `b + (lr - b) * prod(a)`, which skips torch's
re-rounding of `lr` at each step. How much that matters depends on `y = lr - b`: each of torch's
roundings is at most 1/2 ulp of `lr`, i.e. `eps lr / 2y` relative to `y`, and later factors scale
`y`. So the product is used only where it provably stays close: while the LR decays (all `a <= 1`,
`lr >= b`: later factors shrink what came before) or where `lr >= 2.5 b` (`lr / y <= 5/3`). Either
way torch's roundings and ours move the result by at most 3 eps per step relative (3e-10 after a
million steps). Near a trough that is followed by a rise (CosineAnnealingLR past T_max), `y` is
tiny and torch's own rounding there is amplified by up to 1e5 on the way up, so those steps are
looped exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MUL, AFFINE, ADD, SET = 0, 1, 2, 3
# Below this many updates a numpy call costs more than looping in Python.
MIN_VECTOR_RUN = 48


@dataclass(frozen=True)
class Updates:
    """One update per scheduler call: kind (MUL/AFFINE/ADD/SET) and its numbers `a`, `b`."""

    kind: np.ndarray   # int8
    a: np.ndarray      # float64
    b: np.ndarray      # float64 (AFFINE's eta_min; 0 otherwise)

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def multiply(factors: np.ndarray) -> "Updates":
        """`lr * factor` at every step."""
        factors = np.asarray(factors, dtype=np.float64)
        return Updates(np.full(len(factors), MUL, np.int8), factors, np.zeros(len(factors)))

    @staticmethod
    def assign(values: np.ndarray) -> "Updates":
        """`lr = value` at every step."""
        values = np.asarray(values, dtype=np.float64)
        return Updates(np.full(len(values), SET, np.int8), values, np.zeros(len(values)))

    def with_first_set_to(self, value: float) -> "Updates":
        """The same updates with the first replaced by `lr = value` (SequentialLR's milestone step)."""
        if not len(self):
            return self
        kind, a, b = self.kind.copy(), self.a.copy(), self.b.copy()
        kind[0], a[0], b[0] = SET, value, 0.0
        return Updates(kind, a, b)


def concatenate(parts: list[Updates]) -> Updates:
    """Updates applied one after the other."""
    if not parts:
        return Updates(np.zeros(0, np.int8), np.zeros(0), np.zeros(0))
    return Updates(np.concatenate([p.kind for p in parts]), np.concatenate([p.a for p in parts]),
                   np.concatenate([p.b for p in parts]))


def interleave(parts: list[Updates]) -> Updates:
    """Step 0 of every part in order, then step 1 of every part, ... (ChainedScheduler)."""
    return Updates(np.stack([p.kind for p in parts], axis=1).ravel(),
                   np.stack([p.a for p in parts], axis=1).ravel(),
                   np.stack([p.b for p in parts], axis=1).ravel())


def apply_updates(start: float, updates: Updates, per_step: int = 1) -> np.ndarray:
    """The LR after each group of `per_step` updates (one scheduler step; more than one for a
    ChainedScheduler), starting from `start`, in torch's order of float operations."""
    count = len(updates)
    if not count:
        return np.empty(0)
    # lr * 1.0 is lr exactly: dropping those leaves the runs long and the result unchanged.
    active = ~((updates.kind == MUL) & (updates.a == 1.0))
    everything = bool(active.all())
    kind, a, b = (updates.kind, updates.a, updates.b) if everything else (
        updates.kind[active], updates.a[active], updates.b[active])
    if not len(kind):
        return np.full(count // per_step, start)
    values = np.empty(len(kind))
    with np.errstate(all="ignore"):  # overflow to inf and 0*inf are torch's values too
        _apply_runs(start, kind, a, b, values)
    if everything:
        return values[per_step - 1::per_step]
    done_by_step_end = np.cumsum(active)[per_step - 1::per_step]   # active updates up to each step's end
    return np.where(done_by_step_end > 0, values[np.maximum(done_by_step_end - 1, 0)], start)


def _apply_runs(lr: float, kind: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    change = np.flatnonzero((kind[1:] != kind[:-1]) | (b[1:] != b[:-1])) + 1
    bounds = np.concatenate(([0], change, [len(kind)])).tolist()
    loop_from = None  # start of a pending stretch of short runs, looped in Python at once
    for start, end in zip(bounds[:-1], bounds[1:]):
        run_kind = int(kind[start])
        if end - start < MIN_VECTOR_RUN:
            loop_from = start if loop_from is None else loop_from
            continue
        if loop_from is not None:
            lr = _loop(lr, kind, a, b, out, loop_from, start)
            loop_from = None
        if run_kind == SET:
            out[start:end] = a[start:end]
        elif run_kind == MUL:
            out[start:end] = np.multiply.accumulate(np.concatenate(([lr], a[start:end])))[1:]
        elif run_kind == ADD:
            out[start:end] = np.add.accumulate(np.concatenate(([lr], a[start:end])))[1:]
        else:
            _affine_run(lr, kind, a, b, out, start, end)
        lr = float(out[end - 1])
    if loop_from is not None:
        _loop(lr, kind, a, b, out, loop_from, len(kind))


def _affine_run(lr: float, kind: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray, start: int,
                end: int) -> None:
    """AFFINE updates start..end-1 (one eta_min): as a product where that stays within 3 eps per step
    of torch (see the module docstring), looped exactly elsewhere."""
    eta = float(b[start])
    factors = a[start:end]
    if eta <= 0:
        _loop(lr, kind, a, b, out, start, end)
        return
    rough = (lr - eta) * np.multiply.accumulate(factors) + eta   # only to choose where the product is safe
    rising = np.flatnonzero(~(factors <= 1.0))
    decaying_from = int(rising[-1]) + 1 if len(rising) else 0   # from here to the end every factor is <= 1
    safe = (rough >= 2.5 * eta) | (np.arange(len(factors)) >= decaying_from)
    edges = np.flatnonzero(safe[1:] != safe[:-1]) + 1
    pieces = np.concatenate(([0], edges, [len(factors)])).tolist()
    for first, last in zip(pieces[:-1], pieces[1:]):
        if safe[first] and lr >= eta and last - first >= MIN_VECTOR_RUN:
            out[start + first:start + last] = (lr - eta) * np.multiply.accumulate(factors[first:last]) + eta
            lr = float(out[start + last - 1])
        else:
            lr = _loop(lr, kind, a, b, out, start + first, start + last)


def _loop(lr: float, kind: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray, start: int, end: int) -> float:
    """Updates start..end-1 one at a time, with the exact expressions of torch's `get_lr`."""
    values = []
    append = values.append
    for update, first, second in zip(kind[start:end].tolist(), a[start:end].tolist(), b[start:end].tolist()):
        if update == MUL:
            lr = lr * first
        elif update == AFFINE:
            lr = first * (lr - second) + second
        elif update == ADD:
            lr = lr + first
        else:
            lr = first
        append(lr)
    out[start:end] = values
    return lr
