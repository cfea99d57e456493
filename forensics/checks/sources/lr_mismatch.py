"""lr_mismatch: two sources log different learning rates for the same optimizer step."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forensics.checks.base import Check, Evidence, Finding, NotApplicable
from forensics.checks.evidence import row_evidence
from forensics.checks.sources.stated_lr import StatedLrGap, stated_lr_gap
from forensics.formatting import fmt_lr, fmt_step
from forensics.model import aliases
from forensics.model.run import Run

RELATIVE_TOLERANCE = 1e-3
FLOAT32_RELATIVE = 2.0 ** -23
# Offsets tried when aligning two sources: one logging the LR a step early or late (HF Trainer logged
# the next step's LR before a 2025 fix) is not a disagreement of values. Offsets are left to off_by_one.
OFFSETS = (0, 1, -1, 2, -2)
MIN_OVERLAP = 3
MIN_MISMATCHES = 2
# A step offset other than 0 is taken only when it makes nearly all shared steps agree.
OFFSET_AGREEMENT = 0.9
# Printed precision is read back from the values; a round value (0.01) understates it, so the slack it
# gives is capped at this relative amount.
MAX_PRINTED_SLACK = 0.05


class LrMismatch(Check):
    """Two sources disagree on the learning rate at the same step.

    **Symptom**: the LR one source logged (the script's stdout, a metrics table) differs from the LR
    another logged for the same optimizer steps (TensorBoard, `trainer_state.json`) by more than
    printing precision, after lining the two up on the step axis; or the LR a config, `hparams.yaml`
    or the training arguments state is 2x or more away from the one every param group used.

    **Bad run**: the script's progress line prints `args.lr` (the configured LR) while TensorBoard logs
    `optimizer.param_groups[0]["lr"]` under an ExponentialLR: stdout says 1.00e-02 at every step, the
    optimizer used 9.04e-03 at step 5 and 1.5e-03 at step 95. (Printing `scheduler.get_lr()` is one
    step ahead instead: an offset, aligned away here and left to `off_by_one`.)

    **Healthy run**: every source that logs the LR agrees within 1e-3 relative (or the precision
    it printed with), possibly shifted by a constant step offset (reported by `off_by_one`, not here);
    at least one param group runs at the stated LR (or a stated scaling rule explains the factor).

    **Fix**: log the LR the optimizer used: `optimizer.param_groups[i]["lr"]` read before
    `scheduler.step()`, or `scheduler.get_last_lr()` read before it; never `scheduler.get_lr()`, a
    config value, or `optimizer.defaults["lr"]`. Then make every logger print that same value.
    """

    code = "lr_mismatch"
    severity = "warning"
    needs = ("LR series from two sources with logged steps, or a stated LR",)

    def run(self, run: Run) -> list[Finding]:
        series = _lr_by_source(run)
        gap = stated_lr_gap(run)
        if len(series) < 2 and gap is None and not run.stated.all("base_lr"):
            raise NotApplicable(f"needs the LR from two sources with logged steps (found {len(series)}) or a "
                                "stated LR (a config's lr)")
        findings = [self._stated_finding(run, gap)] if gap is not None else []
        if len(series) < 2:
            return findings
        (reference_key, reference), *others = sorted(series.items(), key=lambda item: -len(item[1]))
        for key, other in others:
            compared = _compare(reference, other)
            if compared is not None:
                findings.append(self._finding(run, reference_key, key, *compared))
        return findings

    def _stated_finding(self, run: Run, gap: StatedLrGap) -> Finding:
        peak = float(gap.peak_row["value"])
        ratio = peak / gap.expected_peak
        message = (f"{gap.fact.where()} states lr={fmt_lr(float(gap.fact.value))}, but the optimizer's LR peaked at "
                   f"{fmt_lr(peak)} (step {fmt_step(int(gap.peak_row['step']))}), "
                   f"{ratio if ratio >= 1 else 1 / ratio:,.1f}x {'above' if ratio >= 1 else 'below'} the "
                   f"{fmt_lr(gap.expected_peak)} the stated LR gives ({gap.basis}): the optimizer was built with "
                   "another LR than the one the run records.")
        evidence = [Evidence(gap.fact.source, gap.fact.locator, gap.fact.value, note="the stated LR"),
                    row_evidence(run, gap.peak_row, expected=gap.expected_peak, note="the highest LR logged"),
                    row_evidence(run, gap.first_row, note="first LR logged")]
        return self.finding(step=int(gap.first_row["step"]), end_step=int(gap.peak_row["step"]), message=message,
                            fix="Build the optimizer from the configured value (`Adam(params, lr=cfg.lr)`, "
                                "`self.hparams.lr` in `configure_optimizers`) instead of a literal, or correct the "
                                "config so that it records what was run.",
                            evidence=evidence, confidence=0.75)

    def _finding(self, run: Run, reference_key: tuple, other_key: tuple, offset: int, overlap: int,
                 mismatched: pd.DataFrame) -> Finding:
        first = mismatched.iloc[0]
        worst = mismatched.iloc[int(np.argmax(mismatched["relative"].to_numpy()))]
        reference_row, other_row = first["reference_row"], first["other_row"]
        shift = f" (after aligning {other_key[0]} {offset:+d} step(s))" if offset else ""
        message = (f"{other_key[0]} ({other_key[1]}) and {reference_key[0]} ({reference_key[1]}) disagree on the LR at "
                   f"{len(mismatched)} of {overlap} shared steps{shift}, from step {fmt_step(int(first['step']))}: "
                   f"{fmt_lr(float(other_row['value']))} vs {fmt_lr(float(reference_row['value']))}; largest gap "
                   f"{worst['relative']:.1%} at step {fmt_step(int(worst['step']))}.")
        evidence = [
            row_evidence(run, other_row, expected=float(reference_row["value"]),
                         note=f"first disagreement; expected is what {reference_key[0]} logged"),
            row_evidence(run, reference_row, note="the other source at the same step"),
        ]
        if worst["step"] != first["step"]:
            evidence.append(row_evidence(run, worst["other_row"], expected=float(worst["reference_row"]["value"]),
                                         note="largest disagreement"))
        return self.finding(step=int(first["step"]), end_step=int(mismatched["step"].iloc[-1]), message=message,
                            fix=self.documentation()["Fix"], evidence=evidence, confidence=0.8)


def _lr_by_source(run: Run) -> dict[tuple, pd.DataFrame]:
    """(source, tag, group) -> its LR rows with finite values and logged steps, one row per (segment, step)."""
    lr = run.series(aliases.LR)
    result = {}
    for (source, tag, group), rows in lr.groupby(["source", "tag", "group"], observed=True, sort=False):
        if not _steps_logged(run, str(source), str(tag)):
            continue
        rows = rows[np.isfinite(rows["value"].to_numpy())].drop_duplicates(["segment", "step"], keep="last")
        if len(rows) >= MIN_OVERLAP:
            result[(str(source), str(tag), int(group))] = rows
    # Only param group 0 is compared across sources unless both name their groups the same way.
    groups = {key[2] for key in result}
    return {key: rows for key, rows in result.items() if key[2] == min(groups)} if groups else {}


def _steps_logged(run: Run, source: str, tag: str) -> bool:
    """A reconstructed step axis (position, last step seen) cannot be compared value by value."""
    found = run.source(source)
    basis = ((found.coverage or {}).get("step_basis") or {}).get(tag, "logged") if found else "logged"
    return basis == "logged" or basis.endswith("counters")  # printed, or computed from the format's own counters


def _compare(reference: pd.DataFrame, other: pd.DataFrame):
    """(offset, shared steps, mismatched rows) when the two disagree beyond tolerance, else None."""
    best = None
    for offset in OFFSETS:
        shifted = other.assign(step=other["step"] - offset)
        joined = shifted.reset_index().merge(reference.reset_index(), on=["segment", "step"],
                                             suffixes=("_other", "_reference"))
        if len(joined) < MIN_OVERLAP:
            continue
        a, b = joined["value_other"].to_numpy(), joined["value_reference"].to_numpy()
        bad = ~_agree(a, b)
        if offset == 0 or bad.mean() <= 1 - OFFSET_AGREEMENT:
            if best is None or bad.sum() < best[2].sum():
                best = (offset, joined, bad)
        if not bad.any():
            return None
    if best is None:
        return None
    offset, joined, bad = best
    if bad.sum() < MIN_MISMATCHES:
        return None
    rows = []
    for position in np.flatnonzero(bad):
        row = joined.iloc[position]
        a, b = float(row["value_other"]), float(row["value_reference"])
        rows.append({"step": int(row["step"]), "relative": abs(a - b) / max(abs(a), abs(b)),
                     "other_row": other.loc[row["index_other"]], "reference_row": reference.loc[row["index_reference"]]})
    return offset, len(joined), pd.DataFrame(rows)


def _agree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal within 1e-3 relative, float32 rounding, or the precision either side was printed with."""
    scale = np.maximum(np.abs(a), np.abs(b))
    printed = np.minimum(np.maximum(_printed_precision(a), _printed_precision(b)), scale * MAX_PRINTED_SLACK)
    tolerance = np.maximum(scale * max(RELATIVE_TOLERANCE, 2 * FLOAT32_RELATIVE), printed)
    return np.abs(a - b) <= tolerance


def _printed_precision(values: np.ndarray) -> np.ndarray:
    """Half a unit in the last digit the source printed with: 4.737e-04 was printed to 1e-07.

    The digit count is the series' largest (a value printed as 1.0000e-02 reads back as 0.01, so one
    value alone understates it); float32/float64 sources come out at 8-17 digits, i.e. no slack.
    """
    finite = values[np.isfinite(values) & (values != 0)]
    if not len(finite):
        return np.zeros(len(values))
    digits = max(len(repr(float(value)).split("e")[0].replace("-", "").replace(".", "").lstrip("0")) or 1
                 for value in finite[:1000])
    exponents = np.floor(np.log10(np.abs(np.where(np.isfinite(values) & (values != 0), values, 1.0))))
    return 0.5 * 10.0 ** (exponents - digits + 1)
