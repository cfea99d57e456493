"""Schedule: the LR the run had against the LR it was meant to have."""

from forensics.checks.schedule.constant_lr import ConstantLr
from forensics.checks.schedule.lr_collapse import LrCollapse
from forensics.checks.schedule.lr_runaway import LrRunaway
from forensics.checks.schedule.momentum_cycling import MomentumCycling
from forensics.checks.schedule.off_by_one import OffByOne
from forensics.checks.schedule.per_epoch_stepping import PerEpochStepping
from forensics.checks.schedule.schedule_incomplete import ScheduleIncomplete
from forensics.checks.schedule.schedule_overrun import ScheduleOverrun
from forensics.checks.schedule.schedule_too_fast import ScheduleTooFast
from forensics.checks.schedule.warmup_missing import WarmupMissing

SCHEDULE_CHECKS = [ConstantLr, PerEpochStepping, ScheduleTooFast, ScheduleOverrun, ScheduleIncomplete, OffByOne,
                   WarmupMissing, MomentumCycling, LrCollapse, LrRunaway]
