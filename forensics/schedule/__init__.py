"""The intended LR schedule: parse it, find it in the run, replay it with torch, compare the actual LR.

Pipeline position: after `build_run`, before the checks. `forensics.analyze` calls
`resolve_intended(run, options)` and stores the result on `run.intended_schedule`; checks read it
from there and call `compare_schedule` for the actual-vs-expected alignment.
"""

from forensics.schedule.compare import ScheduleComparison, compare_schedule, name_time_scale
from forensics.schedule.intended import IntendedSchedule, resolve_intended
from forensics.schedule.replay import Replay, replay
from forensics.schedule.sources import ScheduleOptions, schedule_options
from forensics.schedule.spec import ScheduleSpec, parse_spec

__all__ = [
    "IntendedSchedule", "Replay", "ScheduleComparison", "ScheduleOptions", "ScheduleSpec", "compare_schedule",
    "name_time_scale", "parse_spec", "replay", "resolve_intended", "schedule_options",
]
