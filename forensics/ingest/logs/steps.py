"""The step axis of a log that prints none: rebuilt from counters, progress bars, or position.

Every value gets a step and a basis, the sentence saying how the step was obtained; the reader
reports the basis per series (`TaggedSeries.step_basis`) and per file (coverage), so a report never
presents a reconstructed axis as a logged one. In order of preference:

1. the step the line prints (`logged`) or the format computes from its own counters
   (`epoch*391+batch from timm progress counters`);
2. a progress-bar counter on the line (`tqdm progress counter n/N`); per-epoch bars that restart
   from zero are continued (`... continued across restarted bars`);
3. in a file without progress bars, a fractional epoch times the optimizer steps per epoch that a
   start-up banner states (HF Trainer's `Total optimization steps = N` over `Num Epochs = E`): HF's
   own `global_step` for the line, to within the rounding of the printed epoch;
4. the last step seen earlier in the file, for lines that print none (validation summaries,
   HF Trainer dicts printed after their bar update);
5. the epoch, when the file has no steps at all;
6. the position of the line among the file's step-less records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from forensics.ingest.logs.formats.base import Parsed

LOGGED = "logged"
AFTER_LAST = "last step logged before the line"
EPOCH = "epoch number (the log gives no optimizer step)"
POSITION = "position in file (the log gives no step, epoch or progress counter)"


@dataclass
class StepAxis:
    """One rank's step state while a file is read in order."""

    last_step: int | None = None
    step_less: int = 0
    _bars: dict[int, tuple[int, int]] = field(default_factory=dict)  # total -> (offset, last n)
    _main_total: int = 0
    facts: dict[str, int] = field(default_factory=dict)

    def resolve(self, parsed: Parsed) -> tuple[int, str]:
        """The step for a parsed line's values and the basis sentence."""
        if parsed.facts:
            self.facts.update(parsed.facts)
            if not parsed.values and parsed.step is None:  # a banner line: no value to place
                return (self.last_step or 0), AFTER_LAST
        if parsed.step is not None:
            self.last_step = parsed.step
            return parsed.step, parsed.step_basis or LOGGED
        step, basis = self._counter(*parsed.progress) if parsed.progress is not None else (self.last_step, AFTER_LAST)
        from_epoch = self._from_epoch(parsed.epoch)
        # A bar redrawn before its dict can lag it by a logging interval, and with no bar the last
        # step is stale; HF's epoch is its exact global_step over the steps per epoch, to within the
        # printed rounding. So the epoch decides whenever the other reading disagrees beyond that.
        if from_epoch is not None and (step is None or not self._main_total
                                       or abs(step - from_epoch[0]) > from_epoch[2]):
            self.last_step = from_epoch[0]
            return from_epoch[0], from_epoch[1]
        if step is not None:
            return step, basis
        if parsed.epoch is not None and float(parsed.epoch).is_integer():  # HF's fractional epochs are no axis
            return int(parsed.epoch), EPOCH
        self.step_less += 1
        return self.step_less - 1, POSITION

    def _from_epoch(self, epoch: float | None) -> tuple[int, str, float] | None:
        """The step a fractional epoch gives with the banner's steps per epoch, its basis and how far
        off the epoch's printed rounding (2 decimals, or 4 significant digits) can put it."""
        per_epoch = steps_per_epoch(self.facts) if epoch is not None else None
        if not per_epoch or not 0 <= epoch * per_epoch < 2**62:  # False for NaN; no int64 overflow
            return None
        rounding = max(0.005, abs(epoch) * 5e-4) * per_epoch + 1
        return round(epoch * per_epoch), (f"epoch x {per_epoch} optimizer steps per epoch (banner: "
                                          f"{self.facts['total_optimization_steps']} steps over "
                                          f"{self.facts['num_epochs']} epochs)"), rounding

    def new_process(self) -> None:
        """A restart banner: the next bar is a new process's own, not the next epoch of the old one."""
        self._bars.clear()

    def resolve_run(self, count: int, steps: np.ndarray | None,
                    epochs: np.ndarray | None) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """`resolve` for a run of lines that state no facts and no progress counter, at once.

        `steps` / `epochs` hold each line's stated step / epoch (None when the lines state none;
        steps already checked to be exact integers). Returns the steps (int64) of the leading
        lines it places and [(basis, lines)] in order of first use; fewer lines than `count` when
        the next line takes a branch this does not vectorise (it then goes through `resolve`).
        """
        if steps is not None:
            placed = np.trunc(steps).astype(np.int64)
            self.last_step = int(placed[-1])
            return placed, [(LOGGED, count)]
        per_epoch = steps_per_epoch(self.facts) if epochs is not None and not self._main_total else None
        if per_epoch and per_epoch < 2**53:
            product = epochs * float(per_epoch)
            inside = (product >= 0) & (product < 2**62)  # False for NaN, as in resolve
            count = count if inside.all() else int(np.argmin(inside))
            if not count:
                return np.empty(0, np.int64), []
            placed = np.rint(product[:count]).astype(np.int64)  # round half to even, like round()
            self.last_step = int(placed[-1])
            return placed, [(self._epoch_basis(per_epoch), count)]
        if self.last_step is not None:
            return np.full(count, self.last_step, dtype=np.int64), [(AFTER_LAST, count)]
        if epochs is None:
            placed = np.arange(self.step_less, self.step_less + count, dtype=np.int64)
            self.step_less += count
            return placed, [(POSITION, count)]
        whole = np.isfinite(epochs) & (epochs == np.floor(epochs))
        too_large = whole & ~(np.abs(epochs) < 2.0**53)  # int(epoch) would not fit the int64 axis
        if too_large.any():
            count = int(np.argmax(too_large))
            whole, epochs = whole[:count], epochs[:count]
            if not count:
                return np.empty(0, np.int64), []
        positions = self.step_less + np.cumsum(~whole) - 1
        placed = np.where(whole, epochs, positions).astype(np.int64)
        self.step_less += int(np.count_nonzero(~whole))
        bases = [(EPOCH, int(np.count_nonzero(whole))), (POSITION, int(np.count_nonzero(~whole)))]
        return placed, [basis for basis in (bases if whole[0] else bases[::-1]) if basis[1]]

    def _epoch_basis(self, per_epoch: int) -> str:
        return (f"epoch x {per_epoch} optimizer steps per epoch (banner: {self.facts['total_optimization_steps']} "
                f"steps over {self.facts['num_epochs']} epochs)")

    def _counter(self, done: int, total: int) -> tuple[int, str]:
        """A bar's counter as a step. Only the main bar (largest total) moves the step; a smaller bar
        (evaluation) keeps the last training step."""
        if total < self._main_total and self.last_step is not None:
            return self.last_step, AFTER_LAST
        self._main_total = max(self._main_total, total)
        offset, last_done = self._bars.get(total, (0, -1))
        if done < last_done:
            # A bar that starts again from zero is the next epoch's bar; one that jumps back elsewhere
            # restates its own position (a resumed HF bar), so it is taken as it is.
            offset = offset + total if done <= 1 else 0
        self._bars[total] = (offset, done)
        step = offset + done
        self.last_step = step
        basis = f"tqdm progress counter n/{total}"
        if offset:
            basis += ", continued across restarted bars"
        return step, basis


def steps_per_epoch(facts: dict[str, int]) -> int | None:
    """Optimizer steps per epoch from HF's banner counters, when they pin it down.

    `Total optimization steps / Num Epochs` is exact when training ran whole epochs. With
    `max_steps` set, HF rounds the epoch count up, so the ratio is then not a whole number or
    disagrees with the examples / batch size / accumulation counts: no axis rather than a wrong one.
    """
    total, epochs = facts.get("total_optimization_steps"), facts.get("num_epochs")
    if not total or not epochs or total % epochs:
        return None
    per_epoch = total // epochs
    examples, accumulation = facts.get("num_examples"), facts.get("gradient_accumulation_steps") or 1
    batch = facts.get("total_batch_size") or (facts.get("per_device_batch_size") or 0) * accumulation
    if examples and batch:
        estimate = math.ceil(examples / batch)
        if abs(per_epoch - estimate) > max(1, 0.02 * estimate):
            return None
    return per_epoch
