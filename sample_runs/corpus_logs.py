"""How corpus scripts print: three common stdout line styles, stderr, and the scalar record.

- `kv`: the sample runs' own `epoch E step S/T loss ... lr ... grad_norm ...` lines (sample_loop.py).
- `hf`: Hugging Face Trainer's printed log dicts, `{'loss': 0.6931, 'grad_norm': ..., 'learning_rate': ...,
  'epoch': 0.12}`: the loss is the mean since the previous log line, rounded to 4 digits; `epoch` is the
  float epoch after the step (1-based step / steps per epoch), rounded to 2 digits; lines come every
  `log_every` optimizer steps counted from 1; no step number is printed.
- `timm`: timm's train.py, `Train: E [ idx/N ( p%)]  Loss: v (avg)  LR: ...`: idx is the optimizer
  update index within the epoch; a line every `log_every` updates and on the epoch's last one; the
  Time/Data columns are left out so the corpus is byte-deterministic.

Everything logged is also kept in `RunLogger.scalars` (whether or not the case writes TensorBoard), so
the ground truth describes what the loop did, not what a reader recovers.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from corpus_spec import STDERR, STDOUT, TENSORBOARD, CaseSpec, Plan
from sample_loop import RunLogger


class CaseLogger:
    """One process lifetime's output: TB and/or train.log in the case's style, and stderr."""

    def __init__(self, spec: CaseSpec, run_dir: Path, plan: Plan) -> None:
        self.spec = spec
        self.plan = plan
        self.run = RunLogger(
            run_dir,
            log_every=spec.log_every,
            tensorboard=TENSORBOARD in spec.sources,
            log_name="train.log" if STDOUT in spec.sources else None,
        )
        self._stderr = open(run_dir / "stderr.log", "a", encoding="utf-8") if STDERR in spec.sources else None  # noqa: SIM115
        self._losses_since_log: list[float] = []
        self._timm_losses: list[float] = []
        self.stderr_texts: list[str] = []  # what went to stderr, kept for the ground truth

    @property
    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        """Every scalar logged in this lifetime, by tag."""
        return self.run.scalars

    def print(self, line: str) -> None:
        """A line on stdout (train.log when the case keeps stdout)."""
        self.run.print(line)

    def stderr(self, text: str) -> None:
        """Text on stderr: its own file if kept apart, else merged into train.log (`2>&1`)."""
        self.stderr_texts.append(text)
        if self._stderr is not None:
            self._stderr.write(text if text.endswith("\n") else text + "\n")
        else:
            self.run.print(text.rstrip("\n"))

    def show_warning(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        """`warnings.showwarning` replacement: print the warning the way Python prints it to stderr."""
        self.stderr(warnings.formatwarning(message, category, filename, lineno, line))

    def banner(self, model_text: str) -> None:
        """The start-up lines each style's script prints."""
        spec, plan = self.spec, self.plan
        if spec.log_style == "kv":
            self.print(
                f"Starting training: model={model_text} optimizer={spec.optimizer}(lr={spec.lr}) "
                f"scheduler={spec.scheduler_text} scheduler_stepping={spec.stepping} epochs={spec.epochs} "
                f"steps_per_epoch={plan.optimizer_steps_per_epoch} total_steps={plan.total_optimizer_steps} "
                f"seed={spec.seed}"
            )
        elif spec.log_style == "hf":
            self.print("***** Running training *****")
            self.print(f"  Num examples = {spec.sample_count}")
            self.print(f"  Num Epochs = {spec.epochs}")
            self.print("  Instantaneous batch size per device = 16")
            self.print(f"  Gradient Accumulation steps = {spec.accum}")
            self.print(f"  Total optimization steps = {plan.total_optimizer_steps}")
        else:
            self.print(f"Model mlp created, param count:{model_text.split(', ')[-1].split(' ')[0]}")
            self.print(f"Scheduler: {spec.scheduler_text}")
            interval = "epoch" if spec.stepping in ("per_epoch", "on_val_loss") else "update"
            self.print(f"Scheduled epochs: {spec.epochs}. LR stepped per {interval}.")

    def resumed(self, path: str, epoch: int | None, global_step: int | None) -> None:
        """The lines a script prints when it loads a checkpoint to resume."""
        if self.spec.log_style == "kv":
            self.print(f"Resuming from {path} (epoch {epoch}, global_step {global_step})")
        elif self.spec.log_style == "hf":
            self.print("  Continuing training from checkpoint, will skip to saved global_step")
            self.print(f"  Continuing training from epoch {epoch}")
            self.print(f"  Continuing training from global step {global_step}")
        else:
            self.print(f"Loaded checkpoint '{path}' (epoch {epoch})")

    def train_step(self, epoch: int, update_index: int, global_step: int, values: dict[str, float]) -> None:
        """Record one optimizer step's scalars (TB tags `train/*`) and print a line when one is due."""
        for key, value in values.items():
            self.run.scalar(f"train/{key}", value, global_step)
        loss, lr = values["loss"], values["lr"]
        style, every = self.spec.log_style, self.spec.log_every
        if style == "kv":
            if global_step % every == 0:
                self.print(
                    f"epoch {epoch} step {global_step}/{self.plan.total_optimizer_steps} loss {loss:.4f} "
                    f"lr {lr:.3e} grad_norm {values['grad_norm']:.2f}"
                )
        elif style == "hf":
            self._losses_since_log.append(loss)
            if (global_step + 1) % every == 0:
                mean_loss = sum(self._losses_since_log) / len(self._losses_since_log)
                self._losses_since_log = []
                epoch_float = (global_step + 1) / self.plan.optimizer_steps_per_epoch
                line = {"loss": round(mean_loss, 4), "grad_norm": values["grad_norm"], "learning_rate": lr}
                line["epoch"] = round(epoch_float, 2)
                self.print(repr(line))
        else:
            self._timm_losses.append(loss)
            updates = self.plan.optimizer_steps_per_epoch
            last = update_index == updates - 1
            if update_index % every == 0 or last:
                finite = [value for value in self._timm_losses if math.isfinite(value)]
                average = sum(self._timm_losses) / len(self._timm_losses) if finite else float("nan")
                percent = 100.0 * (update_index + 1) / updates
                self.print(
                    f"Train: {epoch} [{update_index:>4d}/{updates} ({percent:>3.0f}%)]  "
                    f"Loss: {loss:#.3g} ({average:#.3g})  LR: {lr:.3e}"
                )
            if last:
                self._timm_losses = []

    def validation(self, epoch: int, global_step: int, val_loss: float, accuracy: float | None) -> None:
        """Record the epoch's validation (TB `val/*` at the epoch's last step) and print it."""
        self.run.scalar("val/loss", val_loss, global_step)
        if accuracy is not None:
            self.run.scalar("val/accuracy", accuracy, global_step)
        style = self.spec.log_style
        if style == "kv":
            tail = f" accuracy {accuracy:.4f}" if accuracy is not None else ""
            self.print(f"epoch {epoch} validation loss {val_loss:.4f}{tail}")
        elif style == "hf":
            line = {"eval_loss": val_loss}
            if accuracy is not None:
                line["eval_accuracy"] = accuracy
            line["epoch"] = float(epoch + 1)
            self.print(repr(line))
        else:
            tail = f"  Acc@1: {100 * accuracy:>7.3f} ({100 * accuracy:>7.3f})" if accuracy is not None else ""
            self.print(f"Test: [   0/0]  Loss: {val_loss:>7.3f} ({val_loss:>6.4f}){tail}")

    def saved(self, path: str) -> None:
        """The line a script prints after `torch.save`."""
        if self.spec.log_style == "hf":
            self.print(f"Saving model checkpoint to {path}")
        else:
            self.print(f"Saved checkpoint {path}")

    def close(self) -> None:
        """Flush and close everything, as the process ends."""
        self.run.close()
        if self._stderr is not None:
            self._stderr.close()
