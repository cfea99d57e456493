"""Lines that are evidence by themselves, turned into `RunEvent`s.

Kinds (the `kind` field; stable names):

- `scheduler_order_warning`: torch's "Detected call of `lr_scheduler.step()` before
  `optimizer.step()`" (the first LR of the schedule was skipped); data: torch's source location.
- `onecycle_overrun`: OneCycleLR's "Tried to step N times. The specified number of total steps is M";
  data: `tried`, `total`.
- `traceback`: a Python traceback; line = its first line, text = the final exception line; data:
  `exception` (the class name).
- `nan_reported`: a line saying the loss/gradients became NaN (`Loss is nan, stopping training`).
- `oom`: CUDA (or CPU) out of memory.
- `resume`: a run resuming or loading a checkpoint; data: `checkpoint` path when printed, and the
  epoch / global step the line states.
- `restart`: a start-up banner seen a second time in the same file (a new process appended to the
  log). A banner is one of the known start-up lines (`Starting training`, an argument dump such as
  `Namespace(...)`, HF's `***** Running training *****`, mmcv's `Start running`, Lightning's
  `GPU available:`) or, failing those, the file's first line when it is not a metric line.
- `overflow`: fp16 loss-scale overflow / skipped step (DeepSpeed, apex, fairseq, Megatron's skipped
  iterations); data: the new `loss_scale` when printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_EVENT_TEXT = 500

# Substrings (of the lowercased line) one of which every event line contains: a cheap test first.
TRIGGERS = ("detected call of", "tried to step", "traceback (most recent", "out of memory", "outofmemory", "nan",
             "overflow", "resum", "checkpoint", "restor", "start", "namespace(", "running training", "gpu available",
             "non-finite")
_SCHEDULER_ORDER = re.compile(r"Detected call of `lr_scheduler\.step\(\)` before `optimizer\.step\(\)`")
_TORCH_LOCATION = re.compile(r"(lr_scheduler\.py:\d+)")
_ONECYCLE = re.compile(r"Tried to step (\d+) times\. The specified number of total steps is (\d+)")
_OOM = re.compile(r"CUDA out of memory|OutOfMemoryError|out of memory", re.IGNORECASE)
_NAN = re.compile(r"\b(?:loss|losses|gradients?|grads?|grad norm)\b[^\n]{0,30}?\b(?:is|are|became|becomes|was)\s+"
                  r"(?:nan|inf|NaN|Inf|non-finite)\b|NaN or Inf found|[Nn]on-finite loss|Detected (?:a )?NaN|"
                  r"nan loss detected|[Ll]oss is NaN", re.IGNORECASE)
_OVERFLOW = re.compile(r"OVERFLOW!|Overflow detected|Gradient overflow|[Gg]rad overflow|overflow detected")
_NEW_SCALE = re.compile(r"(?:reducing(?: loss scale)? to|setting loss scale to:?)\s*([0-9.eE+-]+)")
RESUME = re.compile(r"[Rr]esuming (?:training )?from|[Rr]esumed? from|[Ll]oading checkpoint(?! shards)|"
                     r"[Ll]oad checkpoint from|[Rr]estor(?:ing|ed) (?:states |training )?from|"
                     r"Continuing training from|resumed epoch")
_CHECKPOINT_PATH = re.compile(r"(?:from|checkpoint|path(?: at)?):?\s+['\"]?([^\s'\",()]+\.(?:pt|pth|ckpt|bin|tar|"
                              r"safetensors)|[^\s'\",()]*checkpoint[-_]\d+[^\s'\",()]*)")
_STATED_STEP = re.compile(r"\b(?:global_step|global step|step)[ =:]+(\d+)")
_STATED_EPOCH = re.compile(r"\bepoch[ =:]+(\d+)")
_BANNERS = (
    ("starting_training", re.compile(r"\b[Ss]tart(?:ing)? training\b")),
    ("argument_dump", re.compile(r"^\s*(?:\S+\s+)?Namespace\(")),
    ("hf_running_training", re.compile(r"\*{5} Running training \*{5}")),
    ("mmcv_start_running", re.compile(r"Start running, host:")),
    ("lightning_gpu_available", re.compile(r"GPU available: ")),
)
_DIGITS = re.compile(r"\d+")


def capped(text: str) -> str:
    """Event text no longer than MAX_EVENT_TEXT characters."""
    text = text.strip()
    return text if len(text) <= MAX_EVENT_TEXT else text[:MAX_EVENT_TEXT - 1] + "…"


@dataclass
class FoundEvent:
    """An event before it gets its source and step: kind, line number, text, data."""

    kind: str
    line: int
    text: str
    data: dict = field(default_factory=dict)


@dataclass
class EventScanner:
    """Reads one file's lines in order and collects events; holds the traceback and banner state."""

    first_line_signature: str | None = None
    banners_seen: dict[str, int] = field(default_factory=dict)
    last_line_was_banner: bool = False
    _traceback_line: int | None = None
    _checked_first_line: bool = False

    def scan(self, line_number: int, text: str, is_metric_line: bool) -> list[FoundEvent]:
        """Events this line starts or completes (a traceback completes on its exception line)."""
        events: list[FoundEvent] = []
        self.last_line_was_banner = False
        if self._traceback_line is not None:
            if text.startswith((" ", "\t")) or not text.strip() or text.startswith("During handling"):
                return events
            events.append(self._end_traceback(text))
        if not self._checked_first_line and text.strip():
            self._checked_first_line = True
            if not is_metric_line and not any(pattern.search(text) for _, pattern in _BANNERS):
                self.first_line_signature = _signature(text)
                self.banners_seen["first_line"] = line_number
                self.last_line_was_banner = True
        elif self.first_line_signature is not None and not is_metric_line and _signature(text) == self.first_line_signature:
            events.append(FoundEvent("restart", line_number, capped(text),
                                     {"banner": "first line of the file", "first_seen_line": self.banners_seen["first_line"]}))
        lowered = text.lower()
        for trigger in TRIGGERS:
            if trigger in lowered:
                break
        else:
            return events
        events += self._triggered(line_number, text, is_metric_line)
        return events

    def at_rest(self) -> bool:
        """No traceback open and the file's first line checked: a metric line can change nothing here
        unless it holds a trigger (what `fast` relies on for whole runs of metric lines)."""
        return self._traceback_line is None and self._checked_first_line

    def finish(self) -> list[FoundEvent]:
        """A traceback still open at the end of the file (the process died mid-print)."""
        if self._traceback_line is None:
            return []
        event = FoundEvent("traceback", self._traceback_line, "Traceback with no final exception line",
                           {"exception": None})
        self._traceback_line = None
        return [event]

    def _triggered(self, number: int, text: str, is_metric_line: bool) -> list[FoundEvent]:
        events = []
        if _SCHEDULER_ORDER.search(text):
            location = _TORCH_LOCATION.search(text)
            events.append(FoundEvent("scheduler_order_warning", number, capped(text[text.find("Detected"):]
                                     if "lr_scheduler.py" not in text else text),
                                     {"torch_location": location.group(1) if location else None}))
        if "Traceback (most recent call last)" in text:
            self._traceback_line = number
        if onecycle := _ONECYCLE.search(text):
            events.append(FoundEvent("onecycle_overrun", number, capped(text),
                                     {"tried": int(onecycle.group(1)), "total": int(onecycle.group(2))}))
        if _OOM.search(text) and self._traceback_line is None:
            events.append(FoundEvent("oom", number, capped(text)))
        if not is_metric_line and _NAN.search(text):
            events.append(FoundEvent("nan_reported", number, capped(text)))
        if overflow := _OVERFLOW.search(text):
            scale = _NEW_SCALE.search(text, overflow.start())
            events.append(FoundEvent("overflow", number, capped(text[overflow.start() - 60 if overflow.start() > 60 else 0:]),
                                     {"loss_scale": float(scale.group(1)) if scale and _is_number(scale.group(1)) else None}))
        if RESUME.search(text):
            events.append(self._resume(number, text))
        events += self._banner(number, text)
        return events

    def _end_traceback(self, text: str) -> FoundEvent:
        start = self._traceback_line
        self._traceback_line = None
        exception = re.match(r"([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Warning)?)\s*:", text)
        return FoundEvent("traceback", start, capped(text), {"exception": exception.group(1) if exception else None})

    def _resume(self, number: int, text: str) -> FoundEvent:
        data = {}
        if path := _CHECKPOINT_PATH.search(text):
            data["checkpoint"] = path.group(1)
        if step := _STATED_STEP.search(text):
            data["global_step"] = int(step.group(1))
        if epoch := _STATED_EPOCH.search(text):
            data["epoch"] = int(epoch.group(1))
        return FoundEvent("resume", number, capped(text), data)

    def _banner(self, number: int, text: str) -> list[FoundEvent]:
        for name, pattern in _BANNERS:
            if pattern.search(text):
                if name in self.banners_seen:
                    return [FoundEvent("restart", number, capped(text),
                                       {"banner": name, "first_seen_line": self.banners_seen[name]})]
                self.banners_seen[name] = number
                self.last_line_was_banner = True
                return []
        return []


def _signature(text: str) -> str:
    """A line with its numbers blanked out: the same banner printed by a later process matches."""
    return " ".join(_DIGITS.sub("#", text).split())[:120]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
