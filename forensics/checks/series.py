"""Series lookups several checks share."""

from __future__ import annotations

import pandas as pd

from forensics.model import aliases
from forensics.model.run import Run


def training_losses(run: Run) -> pd.DataFrame:
    """The canonical training loss, or else every training-side metric with `loss` in its name
    (a GAN logs `train_disc_loss` and `train_gen_loss`, YOLO `train/box_loss`, ... but no `loss`)."""
    main = run.series(aliases.LOSS)
    if len(main):
        return main
    parts = [frame for name, frame in run.metrics.items()
             if "loss" in name and not name.startswith(("val", "eval", "test")) and len(frame)]
    return pd.concat(parts, ignore_index=True) if parts else main


def busiest_source(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the source that logged the most values (empty in, empty out).

    When a metric comes from several files (TensorBoard and stdout, say), the densest one has a value
    at the steps a check looks at; mixing sources would interleave their logging offsets.
    """
    if frame.empty:
        return frame
    return frame[frame["source"] == frame["source"].value_counts().idxmax()]
