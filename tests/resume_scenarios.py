"""The resumed runs of the resume tests, each two (or three) real process lifetimes (`resume_runs`).

Each scenario writes one run under `root` and returns what its lifetimes did; the tests measure their
expected onsets from that record. Nothing here knows what the analysis should find.
"""

from __future__ import annotations

from pathlib import Path

import torch

from resume_runs import (
    CsvLog, Lifetime, Loop, TensorBoardLog, advance_clock, capture_stderr, cosine, in_new_process, linear_warmup_decay,
    warmup_cosine)

TOTAL = 200
SAVE_EVERY = 20


def _train(loop: Loop, log, steps: range, save=None) -> Lifetime:
    life = Lifetime()
    for step in steps:
        loop.step(step, life, log)
        if save is not None and (step + 1) % SAVE_EVERY == 0:
            save(step + 1)
    log.close()
    import os

    life.pid = os.getpid()
    return life


def fresh_scheduler_continuing_steps(root: Path, make_scheduler=warmup_cosine, crash_at: int = 60,
                                     queued: float = 0.0, loading: float = 0.0) -> list[Lifetime]:
    """Resume loads the model and the global step but builds a fresh optimizer and scheduler: the step
    continues, the LR starts its warmup again. The restarted job may wait `queued` seconds before it
    starts and spend `loading` seconds between opening its writer and its first step."""
    ckpts = root / "checkpoints"

    def first() -> Lifetime:
        ckpts.mkdir(parents=True, exist_ok=True)
        loop = Loop(make_scheduler)
        save = lambda step: torch.save(loop.state("model", "optimizer", "rng_state", global_step=step),
                                       ckpts / f"step_{step}.pt")
        return _train(loop, TensorBoardLog(root / "tb"), range(crash_at), save)

    def second() -> Lifetime:
        advance_clock(queued)
        loop = Loop(None)
        state = torch.load(ckpts / f"step_{crash_at}.pt", weights_only=True)
        loop.model.load_state_dict(state["model"])
        loop.scheduler = make_scheduler(loop.optimizer)  # fresh optimizer LR and a fresh scheduler
        save = lambda step: torch.save(loop.state("model", "optimizer", "rng_state", global_step=step),
                                       ckpts / f"step_{step}.pt")
        log = TensorBoardLog(root / "tb")
        advance_clock(loading)
        return _train(loop, log, range(state["global_step"], TOTAL), save)

    return [in_new_process(first), in_new_process(second)]


def start_epoch_left_at_zero(root: Path, steps_per_epoch: int = 20, crash_epoch: int = 3) -> list[Lifetime]:
    """The resumed process restores model, optimizer and scheduler but a leftover `start_epoch = 0`
    makes it log from step 0 again while the restored scheduler continues."""
    ckpts = root / "checkpoints"

    def lifetime(resume: bool) -> Lifetime:
        ckpts.mkdir(parents=True, exist_ok=True)
        loop = Loop(warmup_cosine)
        start_epoch = 0
        if resume:
            state = torch.load(ckpts / "last.pt", weights_only=True)
            loop.restore(state)
            start_epoch = state["epoch"] + 1
            start_epoch = 0  # the leftover line
        log = TensorBoardLog(root / "tb")
        life = Lifetime()
        last_epoch = TOTAL // steps_per_epoch if resume else crash_epoch
        for epoch in range(start_epoch, last_epoch):
            for batch in range(steps_per_epoch):
                loop.step(epoch * steps_per_epoch + batch, life, log)
            torch.save(loop.state("model", "optimizer", "scheduler", "rng_state", epoch=epoch), ckpts / "last.pt")
        log.close()
        return life

    return [in_new_process(lifetime, False), in_new_process(lifetime, True)]


def hf_weights_only_folders(root: Path, crash_at: int = 60) -> list[Lifetime]:
    """HF-style `checkpoint-N/` folders holding only the weights; the resume takes N from the folder name
    and starts a fresh optimizer and a fresh (warmup) scheduler."""
    def first() -> Lifetime:
        loop = Loop(linear_warmup_decay)

        def save(step: int) -> None:
            folder = root / f"checkpoint-{step}"
            folder.mkdir(parents=True)
            torch.save(loop.model.state_dict(), folder / "pytorch_model.bin")
        return _train(loop, TensorBoardLog(root / "runs"), range(crash_at), save)

    def second() -> Lifetime:
        newest = max(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        loop = Loop(linear_warmup_decay)
        loop.model.load_state_dict(torch.load(newest / "pytorch_model.bin", weights_only=True))
        return _train(loop, TensorBoardLog(root / "runs"), range(int(newest.name.split("-")[1]), TOTAL))

    return [in_new_process(first), in_new_process(second)]


def fast_forwarded_scheduler(root: Path, crash_at: int = 60) -> list[Lifetime]:
    """Checkpoints hold model and optimizer only (no scheduler, no step); the resume rebuilds the schedule
    correctly by stepping a fresh scheduler N times before training (torch warns about the order)."""
    ckpts = root / "checkpoints"

    def first() -> Lifetime:
        ckpts.mkdir(parents=True, exist_ok=True)
        handle = capture_stderr(root / "train.log")
        loop = Loop(warmup_cosine)
        save = lambda step: torch.save(loop.state("model", "optimizer"), ckpts / f"ckpt_{step}.pt")
        life = _train(loop, TensorBoardLog(root / "tb"), range(crash_at), save)
        handle.close()
        return life

    def second() -> Lifetime:
        handle = capture_stderr(root / "train.log")
        newest = max(ckpts.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        done = int(newest.stem.split("_")[1])  # the step count the file name carries
        loop = Loop(None)
        loop.restore(torch.load(newest, weights_only=True))
        for group in loop.optimizer.param_groups:
            group.pop("initial_lr", None)
            group["lr"] = 0.1
        loop.scheduler = warmup_cosine(loop.optimizer)
        for _ in range(done):  # fast-forward before any optimizer.step(): torch warns (once, by default)
            loop.scheduler.step()
        life = _train(loop, TensorBoardLog(root / "tb"), range(done, TOTAL))
        handle.close()
        return life

    return [in_new_process(first), in_new_process(second)]


def lightning_versions_resume(root: Path, crash_at: int = 60) -> list[Lifetime]:
    """Healthy: `fit(ckpt_path="last.ckpt")` writes the resumed lifetime to a new `version_1/` folder;
    the step and the LR continue (CSV metrics, full checkpoint)."""
    logs = root / "lightning_logs"

    def lifetime(resume: bool) -> Lifetime:
        loop = Loop(cosine)
        start = 0
        if resume:
            state = torch.load(root / "last.ckpt", weights_only=True)
            loop.restore(state)
            start = state["global_step"]
        save = lambda step: torch.save(loop.state("model", "optimizer", "scheduler", "rng_state", global_step=step,
                                                  epoch=step // 20), root / "last.ckpt")
        return _train(loop, CsvLog(logs), range(start, crash_at if not resume else TOTAL), save)

    return [in_new_process(lifetime, False), in_new_process(lifetime, True)]


def hf_rerun_identical_lr(root: Path, crash_at: int = 70) -> list[Lifetime]:
    """Healthy: the first process logged past its last checkpoint before it died; the resume from
    `checkpoint-60/` (full state) re-runs steps 60-69 with the same LR."""
    def lifetime(resume: bool) -> Lifetime:
        loop = Loop(linear_warmup_decay)
        start = 0
        if resume:
            newest = max(root.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            loop.model.load_state_dict(torch.load(newest / "pytorch_model.bin", weights_only=True))
            loop.optimizer.load_state_dict(torch.load(newest / "optimizer.pt", weights_only=True))
            loop.scheduler.load_state_dict(torch.load(newest / "scheduler.pt", weights_only=True))
            start = int(newest.name.split("-")[1])

        def save(step: int) -> None:
            folder = root / f"checkpoint-{step}"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(loop.model.state_dict(), folder / "pytorch_model.bin")
            torch.save(loop.optimizer.state_dict(), folder / "optimizer.pt")
            torch.save(loop.scheduler.state_dict(), folder / "scheduler.pt")
            torch.save({"python": 0, "cpu": torch.get_rng_state()}, folder / "rng_state.pth")
            (folder / "trainer_state.json").write_text(
                '{"global_step": %d, "max_steps": %d, "log_history": []}' % (step, TOTAL))
        return _train(loop, TensorBoardLog(root / "runs"), range(start, TOTAL if resume else crash_at), save)

    return [in_new_process(lifetime, False), in_new_process(lifetime, True)]


def never_stepped_scheduler(root: Path, crash_at: int = 60) -> list[Lifetime]:
    """Healthy: a scheduler is created and never stepped, so the LR is flat; the run restarts cleanly."""
    def lifetime(resume: bool) -> Lifetime:
        loop = Loop(cosine)
        loop.scheduler_never_stepped = loop.scheduler
        loop.scheduler = None
        start = 0
        if resume:
            state = torch.load(root / "last.pt", weights_only=True)
            loop.restore(state)
            start = state["global_step"]
        save = lambda step: torch.save(loop.state("model", "optimizer", "rng_state", global_step=step),
                                       root / "last.pt")
        return _train(loop, TensorBoardLog(root / "tb"), range(start, TOTAL if resume else crash_at), save)

    return [in_new_process(lifetime, False), in_new_process(lifetime, True)]


def clean_restart(root: Path, crash_at: int = 60) -> list[Lifetime]:
    """Healthy: full checkpoints (model, optimizer, scheduler, RNG, global step); the step and LR continue."""
    def lifetime(resume: bool) -> Lifetime:
        loop = Loop(warmup_cosine)
        start = 0
        if resume:
            state = torch.load(root / "last.pt", weights_only=True)
            loop.restore(state)
            torch.set_rng_state(state["rng_state"])
            start = state["global_step"]
        save = lambda step: torch.save(loop.state("model", "optimizer", "scheduler", "rng_state", global_step=step),
                                       root / "last.pt")
        return _train(loop, TensorBoardLog(root / "tb"), range(start, TOTAL if resume else crash_at), save)

    return [in_new_process(lifetime, False), in_new_process(lifetime, True)]


SCENARIOS = {
    "fresh_scheduler": fresh_scheduler_continuing_steps,
    "fresh_scheduler_from_zero": lambda root: fresh_scheduler_continuing_steps(root, linear_warmup_decay),
    "fresh_scheduler_slow_restart": lambda root: fresh_scheduler_continuing_steps(
        root, linear_warmup_decay, queued=2 * 3600.0, loading=120.0),
    "start_epoch_zero": start_epoch_left_at_zero,
    "hf_weights_only": hf_weights_only_folders,
    "fast_forward": fast_forwarded_scheduler,
    "lightning_versions": lightning_versions_resume,
    "hf_rerun": hf_rerun_identical_lr,
    "never_stepped": never_stepped_scheduler,
    "clean_restart": clean_restart,
}
