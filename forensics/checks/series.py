"""Series lookups several checks share."""

from __future__ import annotations

import pandas as pd

from forensics.model import aliases
from forensics.model.run import Run


def training_loss_parts(run: Run) -> dict[str, pd.DataFrame]:
    """Every training loss series by metric name: the canonical `loss` first, then its components
    (YOLO's `train/box_loss`/`obj_loss`/`cls_loss`, mmdet's `loss_cls`, a GAN's generator and
    discriminator losses, per-head losses). A NaN in any of them is a NaN in training."""
    parts = {name: frame for name, frame in run.metrics.items() if aliases.is_training_loss(name) and len(frame)}
    return dict(sorted(parts.items(), key=lambda item: item[0] != aliases.LOSS))


def training_losses(run: Run) -> pd.DataFrame:
    """The canonical training loss, or else every component loss together (a GAN logs
    `train_disc_loss` and `train_gen_loss`, YOLO `train/box_loss`, ... but no `loss`)."""
    main = run.series(aliases.LOSS)
    if len(main):
        return main
    parts = list(training_loss_parts(run).values())
    return pd.concat(parts, ignore_index=True) if parts else main


def all_training_losses(run: Run) -> pd.DataFrame:
    """The canonical loss and every component in one frame (tell them apart by `tag`)."""
    parts = list(training_loss_parts(run).values())
    return pd.concat(parts, ignore_index=True) if parts else run.series(aliases.LOSS)


def busiest_source(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the source that logged the most values (empty in, empty out).

    When a metric comes from several files (TensorBoard and stdout, say), the densest one has a value
    at the steps a check looks at; mixing sources would interleave their logging offsets.
    """
    if frame.empty:
        return frame
    return frame[frame["source"] == frame["source"].value_counts().idxmax()]
