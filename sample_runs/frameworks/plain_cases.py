"""The plain-PyTorch cases: one `Case` per run, its recipe, the config file its script writes (if any),
and how each expected code's onset is measured from what the run logged (`plain_labels.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from plain_loop import Recipe

TB_VOCABS = [
    {"lr": "train/lr", "loss": "train/loss"},
    {"lr": "learning_rate", "loss": "Loss/train", "grad_norm": "grad_norm"},
    {"lr": "optim/lr", "loss": "loss", "grad_norm": "optim/grad_norm", "momentum": "optim/beta1"},
    {"lr": "lr", "loss": "train_loss", "momentum": "momentum"},
]


@dataclass
class Case:
    name: str
    recipe: Recipe
    description: str
    expected: list = field(default_factory=list)    # codes; each measured by plain_labels.MEASURE[code]
    allowed: list = field(default_factory=list)
    config: tuple | None = None                      # (relative path, dict) the script writes at start
    cli_schedule: dict | None = None

    @property
    def healthy(self) -> bool:
        return not self.expected


def R(**kwargs) -> Recipe:
    return Recipe(**kwargs)


SPE = 10  # 320 samples / batch 32: optimizer steps per epoch without accumulation

CASES: list[Case] = [
    # ------------------------------------------------------------ per_epoch_stepping
    Case("plain_per_epoch_onecycle_tqdm",
         R(scheduler="onecycle", sched_args={"total_steps": 15 * SPE, "pct_start": 0.3, "cycle_momentum": False},
           stepping="epoch", epochs=15, lr=1e-2, sinks=("tqdm",), step_base=1, ckpt_layout="step_pt", ckpt_every=5),
         "OneCycleLR sized in batches (150) but stepped at the end of each epoch; LR only in a tqdm postfix; "
         "Hydra-style config with a _target_ scheduler.",
         ["per_epoch_stepping"], ["constant_lr", "schedule_incomplete", "loss_plateau"],
         (".hydra/config.yaml", {"trainer": {"max_epochs": 15}, "optim": {"_target_": "torch.optim.AdamW", "lr": 0.01},
                                 "scheduler": {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "max_lr": 0.01,
                                               "total_steps": 150, "pct_start": 0.3}, "data": {"batch_size": 32}})),
    Case("plain_per_epoch_warmup_cosine_jsonl",
         R(scheduler="warmup_cosine", sched_args={"warmup": 30, "total": 20 * SPE}, stepping="epoch", epochs=20,
           sinks=("jsonl",)),
         "Warmup (30 steps) + cosine over 200 steps written as a LambdaLR, stepped per epoch; metrics.jsonl; "
         "config in HF vocabulary (cosine_with_warmup, warmup_steps, total_steps).",
         ["per_epoch_stepping"], ["schedule_incomplete", "constant_lr", "loss_plateau"],
         ("config.yaml", {"lr": 0.003, "scheduler": "cosine_with_warmup", "warmup_steps": 30, "total_steps": 200,
                          "epochs": 20, "batch_size": 32})),
    Case("plain_per_epoch_linear_csv_nointent",
         R(scheduler="linear_warmup", sched_args={"warmup": 20, "total": 15 * SPE}, stepping="epoch", epochs=15,
           sinks=("csv",), step_base=1),
         "Linear warmup/decay LambdaLR sized in steps (150), stepped per epoch; CSV metrics only, no config.",
         ["per_epoch_stepping"], ["schedule_incomplete", "constant_lr", "loss_plateau"]),
    Case("plain_per_epoch_onecycle_tb_nointent",
         R(scheduler="onecycle", sched_args={"total_steps": 12 * SPE, "cycle_momentum": False}, stepping="epoch",
           epochs=12, lr=1e-2, sinks=("tb",), tags=TB_VOCABS[1], ckpt_layout="epoch_pth", ckpt_every=4),
         "OneCycleLR(total_steps=120) stepped per epoch; TensorBoard and epoch checkpoints, no config.",
         ["per_epoch_stepping"], ["constant_lr", "schedule_incomplete", "loss_plateau"]),
    # ------------------------------------------------------------ schedule_too_fast
    Case("plain_too_fast_cosine_tmax_epochs_tb",
         R(scheduler="cosine", sched_args={"T_max": 30}, epochs=30, lr=5e-3, sinks=("tb",), tags=TB_VOCABS[0]),
         "CosineAnnealingLR(T_max=epochs=30) meant per epoch (timm-style args.yaml says epochs) but stepped per "
         "batch: the LR is 0 at step 30 and oscillates after.",
         ["schedule_too_fast"], ["schedule_overrun"],
         ("args.yaml", {"sched": "cosine", "epochs": 30, "lr": 0.005, "min_lr": 0.0, "warmup_epochs": 0,
                        "batch_size": 32})),
    Case("plain_too_fast_steplr_nested_json",
         R(scheduler="step", sched_args={"step_size": 10, "gamma": 0.5}, epochs=30, lr=5e-3, sinks=("kv",),
           ckpt_layout="last_pt"),
         "StepLR(step_size=10, gamma=0.5) meant every 10 epochs (nested lr_schedule in config.json) but stepped "
         "per batch: halves every 10 steps. key=value lines.",
         ["schedule_too_fast"], ["lr_collapse", "loss_plateau"],
         ("configs/train.json", {"optimizer": {"name": "adamw", "lr": 0.005},
                                 "lr_schedule": {"name": "step", "step_size": 10, "gamma": 0.5, "interval": "epoch"},
                                 "epochs": 30, "batch_size": 32})),
    Case("plain_too_fast_exp_timm_logging",
         R(scheduler="exp", sched_args={"gamma": 0.9}, epochs=25, lr=5e-3, sinks=("logging",)),
         "ExponentialLR(gamma=0.9) meant per epoch (timm args: sched exponential, decay_rate 0.9) stepped per batch; "
         "python logging lines.",
         ["schedule_too_fast"], ["lr_collapse", "loss_plateau"],
         ("args.yaml", {"sched": "exponential", "decay_rate": 0.9, "epochs": 25, "lr": 0.005, "warmup_epochs": 0})),
    Case("plain_too_fast_cosine_hydra_tqdm",
         R(scheduler="cosine", sched_args={"T_max": 20}, epochs=20, lr=5e-3, sinks=("tqdm",), step_base=1),
         "Hydra config: CosineAnnealingLR T_max 20 with interval epoch; the script steps it per batch; tqdm postfix.",
         ["schedule_too_fast"], ["schedule_overrun"],
         (".hydra/config.yaml", {"optim": {"lr": 0.005}, "trainer": {"max_epochs": 20},
                                 "scheduler": {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "T_max": 20,
                                               "interval": "epoch"}})),
    # ------------------------------------------------------------ schedule_overrun
    Case("plain_overrun_cosine_stale_tb",
         R(scheduler="cosine", sched_args={"T_max": 10 * SPE}, epochs=15, lr=5e-3, sinks=("tb",), tags=TB_VOCABS[2],
           ckpt_layout="epoch_pth", ckpt_every=5),
         "CosineAnnealingLR(T_max=100 steps, from a stale epochs=10) while the config now trains 15 epochs: the LR "
         "reaches 0 at step 100 and climbs for the last third.",
         ["schedule_overrun"], ["schedule_too_fast"],
         ("config.yaml", {"epochs": 15, "lr": 0.005, "scheduler": {"name": "cosine", "t_max_steps": 100}})),
    Case("plain_overrun_hf_lambda_jsonl_nointent",
         R(scheduler="warmup_cosine", sched_args={"warmup": 10, "total": 100}, epochs=15, lr=5e-3, sinks=("jsonl",),
           step_base=1),
         "HF-formula warmup+cosine LambdaLR for 100 steps, trained for 150: past its horizon the cosine climbs back "
         "towards the peak. metrics.jsonl only.",
         ["schedule_overrun"], []),
    Case("plain_overrun_short_tmax_kv_nointent",
         R(scheduler="cosine", sched_args={"T_max": 25}, epochs=15, lr=5e-3, sinks=("kv",)),
         "CosineAnnealingLR(T_max=25) per batch over 150 steps, no config: the LR hits 0 at step 25 and cycles.",
         ["schedule_overrun"], ["schedule_too_fast"]),
    # ------------------------------------------------------------ schedule_incomplete
    Case("plain_incomplete_accum_onecycle_tb",
         R(scheduler="onecycle", sched_args={"total_steps": 20 * 10, "cycle_momentum": False}, accum=4, epochs=20,
           lr=1e-2, n_train=320, batch_size=8, sinks=("tb",), tags=TB_VOCABS[0], ckpt_layout="epoch_pth", ckpt_every=10),
         "OneCycleLR(total_steps=len(loader)*epochs=800) with gradient accumulation over 4 batches: 200 optimizer "
         "steps, the run ends a quarter into the schedule.",
         ["schedule_incomplete"], [],
         ("config.yaml", {"epochs": 20, "batch_size": 8, "gradient_accumulation_steps": 4, "lr": 0.01,
                          "scheduler": "onecycle"})),
    Case("plain_incomplete_accum_cosine_csv",
         R(scheduler="warmup_cosine", sched_args={"warmup": 20, "total": 15 * 40}, accum=4, epochs=15, batch_size=8,
           sinks=("csv",), step_base=1),
         "Warmup+cosine with total_steps = len(loader)*epochs = 600 while accumulating 4 batches: 150 steps taken, "
         "the LR ends near its peak. CSV; config in HF vocabulary.",
         ["schedule_incomplete"], [],
         ("config.yaml", {"lr": 0.003, "lr_scheduler_type": "cosine", "warmup_steps": 20, "total_steps": 600,
                          "gradient_accumulation_steps": 4, "num_train_epochs": 15})),
    Case("plain_incomplete_budget_jsonl",
         R(scheduler="cosine", sched_args={"T_max": 30 * SPE}, epochs=12, lr=5e-3, sinks=("jsonl",),
           ckpt_layout="hf_dirs", ckpt_every=6),
         "Cosine over 30 epochs (300 steps) per the config, but the job's time budget ends it after 12 epochs: "
         "the LR is still at 0.65 of its peak.",
         ["schedule_incomplete"], [],
         ("config.json", {"epochs": 30, "lr": 0.005, "lr_schedule": {"name": "cosine", "total_steps": 300}})),
    Case("plain_incomplete_accum_kv_ckpt",
         R(scheduler="onecycle", sched_args={"total_steps": 12 * 20, "cycle_momentum": False}, accum=4, epochs=12,
           lr=1e-2, batch_size=16, sinks=("kv",), ckpt_layout="step_pt", ckpt_every=4),
         "OneCycleLR(total_steps=len(loader)*epochs=240) with accumulation over 4 batches; no config, the horizon is "
         "only in the checkpoints' scheduler state.",
         ["schedule_incomplete"], []),
    # ------------------------------------------------------------ off_by_one
    Case("plain_off_by_one_prestep_tqdm",
         R(scheduler="warmup_cosine", sched_args={"warmup": 20, "total": 15 * SPE}, prestep=True, epochs=15,
           sinks=("tqdm",), step_base=1),
         "A stray scheduler.step() right after building a warmup+cosine LambdaLR: every step uses the next one's LR "
         "(first LR 2x the intended); torch's ordering warning is in train.log.",
         ["off_by_one"], [],
         ("config.yaml", {"lr": 0.003, "scheduler": "linear_warmup_cosine", "warmup_steps": 20, "total_steps": 150})),
    Case("plain_off_by_one_before_optimizer_kv",
         R(scheduler="linear_warmup", sched_args={"warmup": 20, "total": 15 * SPE}, stepping="before_optimizer",
           epochs=15, sinks=("kv",)),
         "scheduler.step() called before optimizer.step() each batch (linear warmup/decay); torch's warning in the log.",
         ["off_by_one"], [],
         ("config.json", {"lr": 0.003, "lr_schedule": {"name": "linear", "warmup_steps": 20, "total_steps": 150}})),
    Case("plain_off_by_one_prestep_tb_nointent",
         R(scheduler="linear_warmup", sched_args={"warmup": 10, "total": 12 * SPE}, prestep=True, epochs=12,
           sinks=("tb", "free"), tags=TB_VOCABS[1]),
         "Pre-stepped linear warmup LambdaLR, no config; TB plus 'Step N:' lines and the torch warning in train.log.",
         ["off_by_one"], []),
    # ------------------------------------------------------------ warmup_missing
    Case("plain_warmup_missing_tb", R(task="regression", optimizer="adam", lr=0.5, scheduler="cosine",
                                      sched_args={"T_max": 20 * SPE}, epochs=20, sinks=("tb",)),
         "Adam at lr=0.5 from step 0 (cosine decay, no warmup) on a regression: the loss jumps far above its start "
         "in the first steps.", ["warmup_missing"], [],
         ("config.yaml", {"lr": 0.5, "scheduler": "cosine", "warmup_steps": 0, "total_steps": 200})),
    Case("plain_warmup_missing_csv_nointent", R(task="regression", optimizer="adam", lr=0.5, seed=3, epochs=20,
                                                sinks=("csv",)),
         "Adam at a constant lr=0.5 with no warmup on a regression; CSV only, no config.", ["warmup_missing"],
         ["loss_plateau", "constant_lr"]),
    Case("plain_warmup_missing_free", R(task="regression", optimizer="adam", lr=0.5, seed=5, scheduler="step",
                                        sched_args={"step_size": 5, "gamma": 0.5}, stepping="epoch", epochs=20,
                                        sinks=("free",), step_base=1),
         "Adam lr=0.5 with StepLR per epoch and no warmup; 'Step N:' free-text lines; timm args warmup_epochs 0.",
         ["warmup_missing"], [],
         ("args.yaml", {"sched": "step", "decay_epochs": 5, "decay_rate": 0.5, "lr": 0.5, "warmup_epochs": 0,
                        "epochs": 20})),
    # ------------------------------------------------------------ momentum_cycling
    Case("plain_momentum_adam_tb",
         R(optimizer="adam", scheduler="onecycle", sched_args={"total_steps": 12 * SPE}, lr=1e-2, epochs=12,
           log_momentum=True, sinks=("tb",), tags=TB_VOCABS[2]),
         "OneCycleLR with default cycle_momentum=True on Adam: beta1 cycles 0.95 -> 0.85 -> 0.95 (logged as optim/beta1).",
         ["momentum_cycling"], []),
    Case("plain_momentum_adamw_ckpt_kv",
         R(optimizer="adamw", scheduler="onecycle", sched_args={"total_steps": 12 * SPE}, lr=1e-2, epochs=12,
           sinks=("kv",), ckpt_layout="epoch_pth", ckpt_every=2),
         "OneCycleLR cycle_momentum=True on AdamW; beta1 is visible only in the checkpoints' optimizer state.",
         ["momentum_cycling"], [],
         ("config.yaml", {"optimizer": "adamw", "lr": 0.01, "scheduler": {"name": "onecycle", "total_steps": 120}})),
    Case("plain_momentum_adam_jsonl",
         R(optimizer="adam", scheduler="onecycle", sched_args={"total_steps": 12 * SPE, "pct_start": 0.25}, lr=1e-2,
           epochs=12, log_momentum=True, sinks=("jsonl",)),
         "OneCycleLR(cycle_momentum=True) on Adam; metrics.jsonl carries momentum = betas[0].",
         ["momentum_cycling"], []),
    # ------------------------------------------------------------ resume_drift
    Case("plain_resume_fresh_scheduler_tb",
         R(scheduler="warmup_cosine", sched_args={"warmup": 20, "total": 12 * SPE}, epochs=12, sinks=("tb",),
           ckpt_layout="epoch_pth", ckpt_every=5, crash_after_epoch=5, resume="fresh_scheduler"),
         "Warmup+cosine per batch; dies after 5 epochs; the restart loads model and optimizer but builds a fresh "
         "scheduler: a new event file continues at step 50 with the warmup repeating.",
         ["resume_drift"], ["schedule_incomplete"],
         ("config.yaml", {"lr": 0.003, "scheduler": "cosine_with_warmup", "warmup_steps": 20, "total_steps": 120})),
    Case("plain_resume_start_epoch_zero_kv",
         R(scheduler="cosine", sched_args={"T_max": 10 * SPE}, epochs=10, sinks=("kv",), ckpt_layout="step_pt",
           ckpt_every=2, crash_after_epoch=4, resume="start_epoch_zero"),
         "Cosine per batch; after a crash at epoch 4 the scheduler is restored but a leftover start_epoch = 0 makes "
         "the process log from step 0 again while the LR continues.",
         ["resume_drift"], ["schedule_overrun", "schedule_incomplete"],
         ("config.json", {"lr": 0.003, "lr_schedule": {"name": "cosine", "total_steps": 100}, "epochs": 10})),
    Case("plain_resume_weights_only_hfdirs_tb",
         R(scheduler="warmup_cosine", sched_args={"warmup": 20, "total": 12 * SPE}, epochs=12, sinks=("tb",),
           tags=TB_VOCABS[1], ckpt_layout="hf_dirs", ckpt_every=2, crash_after_epoch=6, resume="weights_only"),
         "HF-style output/checkpoint-N/ folders holding weights only; the restart resumes with a fresh optimizer "
         "and scheduler, so the warmup repeats from step 60 in a second event file.",
         ["resume_drift"], ["missing_resume_state", "schedule_incomplete"]),
    Case("plain_resume_fresh_scheduler_tqdm_nointent",
         R(scheduler="onecycle", sched_args={"total_steps": 12 * SPE, "cycle_momentum": False}, lr=1e-2, epochs=12,
           sinks=("tqdm",), step_base=1, ckpt_layout="last_pt", crash_after_epoch=6, resume="fresh_scheduler"),
         "OneCycleLR; weights/last.pt has the scheduler but the restart never loads it: the LR drops back to "
         "max_lr/25 at the resume. tqdm postfix only, no config.",
         ["resume_drift"], ["schedule_incomplete"]),
    # ------------------------------------------------------------ missing_resume_state
    Case("plain_missing_sched_fastforward_tb",
         R(scheduler="onecycle", sched_args={"total_steps": 12 * SPE, "cycle_momentum": False}, lr=1e-2, epochs=12,
           sinks=("tb",), ckpt_layout="epoch_pth", ckpt_every=4, crash_after_epoch=4, resume="fastforward"),
         "Checkpoints carry no scheduler state; the restart fast-forwards a fresh OneCycleLR global_step times, so "
         "the LR is right (torch warns about the order).",
         ["missing_resume_state"], []),
    Case("plain_missing_sched_fastforward_kv",
         R(scheduler="warmup_cosine", sched_args={"warmup": 20, "total": 12 * SPE}, epochs=12, sinks=("kv",),
           ckpt_layout="epoch_pth", ckpt_every=2, crash_after_epoch=6, resume="fastforward"),
         "No scheduler state in epoch checkpoints; fast-forwarded on restart; key=value lines with the warning.",
         ["missing_resume_state"], [],
         ("config.yaml", {"lr": 0.003, "scheduler": "warmup_cosine", "warmup_steps": 20, "total_steps": 120})),
    Case("plain_missing_optimizer_hfdirs_jsonl",
         R(scheduler="warmup_cosine", sched_args={"warmup": 20, "total": 12 * SPE}, epochs=12, sinks=("jsonl",),
           ckpt_layout="hf_dirs", ckpt_every=3, crash_after_epoch=6, resume="no_optimizer"),
         "checkpoint-N/ folders with weights and scheduler but no optimizer.pt: AdamW's moments restart at the resume "
         "while the LR continues correctly.",
         ["missing_resume_state"], ["resume_drift"]),
    Case("plain_missing_sched_fastforward_csv_nointent",
         R(scheduler="cosine", sched_args={"T_max": 12 * SPE}, epochs=12, sinks=("csv",), ckpt_layout="epoch_pth",
           ckpt_every=3, crash_after_epoch=6, resume="fastforward"),
         "Cosine; checkpoints without scheduler state, the resume fast-forwards it; CSV only, no config.",
         ["missing_resume_state"], []),
]
