"""Wall times from the timestamps that logging frameworks put at the start of a line.

Recognised prefixes (after any rank prefix and colour codes are stripped):

- ISO 8601 and Python logging's default `2024-05-01 12:34:56,789` (also fairseq's
  `2024-05-01 12:34:56 | INFO | ...`, nanoGPT forks, `2024-05-01T12:34:56.789+02:00`);
- the same inside brackets, `[2024-05-01 12:34:56]` / `[2024-05-01 12:34:56,789]`;
- mmengine / mmdet `2023/05/01 12:34:56`;
- HF transformers' logging `05/01/2024 12:34:56` (month first);
- mmengine's short form `04/21 21:03:53` and absl / glog `I0501 12:34:56.789` (no year).

A time with no zone is read as it is printed, never converted with the analysing machine's zone, so
the same log gives the same times anywhere; only differences between times are meaningful
("no time zone"). A printed zone (`Z`, `+02:00`) is applied, giving true UTC seconds. Formats that
print no year are placed in YEARLESS_BASE (a leap year, so `02/29` parses) and move to the next
year when the month goes back (December to January).

Epoch seconds in JSON lines (`"time"`, `"timestamp"`, `"_timestamp"`) come from the JSON format
itself (`Parsed.wall_time`), not from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

NO_ZONE = "wall times from line timestamps (no time zone)"
YEARLESS_BASE = 2000
# Epoch seconds a JSON `time` field must fall between to be a clock rather than seconds per
# iteration (mmengine's `"time": 0.43`): 2001-09-09 to 2096-10-02.
EPOCH_SECONDS_RANGE = (1e9, 4e9)
_DAY = 86400.0
_HALF_YEAR = 183 * _DAY

# One anchored pattern; the alternatives name their groups by layout.
_STAMP = re.compile(
    r"\[?(?:"
    r"(?P<iy>\d{4})[-/](?P<im>\d{2})[-/](?P<id>\d{2})"            # 2024-05-01 / 2023/05/01
    r"|(?P<um>\d{2})/(?P<ud>\d{2})/(?P<uy>\d{4})"                 # 05/01/2024 (HF)
    r"|(?P<sm>\d{2})/(?P<sd>\d{2})"                               # 04/21 (mmengine, no year)
    r"|[IWEF](?P<gm>\d{2})(?P<gd>\d{2})"                          # I0501 (absl / glog, no year)
    r")[T ](?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})(?:[.,](?P<frac>\d{1,9}))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2}(?![\d:]))?")
# Characters that, right after a matched stamp, mean the stamp is longer (fraction, zone, more digits).
_STAMP_GOES_ON = frozenset("0123456789.,:+-Z")


def may_start_with_time(text: str) -> bool:
    """The cheap test run on every line: a digit, `[`, or a glog severity letter followed by a digit."""
    first = text[:1]
    return first.isdigit() or first == "[" or (first in "IWEF" and text[1:2].isdigit())


@dataclass
class LineClock:
    """One file's clock while it is read in order: the last time seen, and what kinds were seen."""

    current: float | None = None
    timed_lines: int = 0
    zoned: bool = False
    yearless: bool = False
    _year_shift: int = 0
    _last_yearless: float | None = None
    _last_stamp: str = ""
    _last_moment: float = 0.0
    _pending: re.Match | None = None
    _days: dict[tuple[int, int, int], int] = field(default_factory=dict)

    def see(self, text: str) -> bool:
        """Whether the line starts with a timestamp; if so it becomes the clock's time.

        Only the match is made here; the conversion waits until a value or event asks for the time
        (`now`), so the many timestamped lines that carry no metric cost one regex match each.
        """
        last = self._last_stamp
        if last and text.startswith(last) and text[len(last):len(last) + 1] not in _STAMP_GOES_ON:
            self.timed_lines += 1  # the same stamp as the last converted line: most lines of a busy log
            self._pending, self.current = None, self._last_moment
            return True
        match = _STAMP.match(text) if may_start_with_time(text) else None
        if match is None:
            return False
        self.timed_lines += 1
        self._pending = match
        return True

    def forget(self) -> None:
        """A new process starts: its lines are untimed until it prints a time of its own."""
        self._pending = self.current = None

    def now(self) -> float | None:
        """The time of the last timestamp seen (None before the first one, or since `forget`)."""
        if self._pending is not None:
            match, self._pending = self._pending, None
            moment = self._moment(*match.groups())
            if moment is None:  # 2024-13-45: looked like a stamp but is no date; keep the previous time
                self.timed_lines -= 1
            else:
                self.current = moment
                self._last_stamp, self._last_moment = match.group(), moment
        return self.current

    def read_prefix(self, text: str) -> float | None:
        """The time the line starts with (it also becomes the clock's time); None when it starts with none."""
        if not self.see(text):
            return None
        match = self._pending
        moment = self.now()
        return moment if match is None or self._last_stamp == match.group() else None

    def set(self, moment: float) -> None:
        """A time the record states itself (epoch seconds in a JSON line)."""
        self._pending, self.current = None, moment

    def _moment(self, iy, im, id_, um, ud, uy, sm, sd, gm, gd, hours, minutes, seconds, frac, zone) -> float | None:
        if iy is not None:
            year, month, day, yearless = int(iy), int(im), int(id_), False
        elif uy is not None:
            year, month, day, yearless = int(uy), int(um), int(ud), False
        else:
            year, yearless = YEARLESS_BASE + self._year_shift, True
            month, day = (int(sm), int(sd)) if sm is not None else (int(gm), int(gd))
        days = self._day_number(year, month, day)
        hours, minutes, seconds = int(hours), int(minutes), int(seconds)
        if days is None or hours > 23 or minutes > 59 or seconds > 60:
            return None
        moment = days * _DAY + hours * 3600 + minutes * 60 + seconds
        if frac:
            moment += int(frac) / 10 ** len(frac)
        if zone:
            moment -= _zone_seconds(zone)
            self.zoned = True
        if yearless:
            moment = self._continue_year(moment, year, month, day)
        return moment

    def _continue_year(self, moment: float, year: int, month: int, day: int) -> float:
        """A year-less time far before the previous one is in the next year (a run across New Year)."""
        self.yearless = True
        if self._last_yearless is not None and moment < self._last_yearless - _HALF_YEAR:
            self._year_shift += 1
            moment += (self._day_number(year + 1, month, day) or 0) * _DAY - (self._day_number(year, month, day) or 0) * _DAY
        self._last_yearless = moment
        return moment

    def _day_number(self, year: int, month: int, day: int) -> int | None:
        key = (year, month, day)
        days = self._days.get(key)
        if days is None:
            try:
                days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
            except ValueError:  # 13/45: not a date, so not a timestamp
                return None
            if len(self._days) > 4096:  # a log spanning years; keep the cache bounded
                self._days.clear()
            self._days[key] = days
        return days


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _zone_seconds(zone: str) -> float:
    if zone == "Z":
        return 0.0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)


def epoch_seconds(value: float | None) -> float | None:
    """A JSON clock field as epoch seconds, or None when it cannot be one (seconds per iteration, ms)."""
    if value is None or not EPOCH_SECONDS_RANGE[0] <= value <= EPOCH_SECONDS_RANGE[1]:
        return None
    return float(value)


def describe(clock: LineClock, json_times: int) -> str:
    """How the file's wall times were obtained, for the source detail and coverage."""
    parts = []
    if clock.timed_lines:
        parts.append(NO_ZONE if not clock.zoned else "wall times from line timestamps (UTC offsets as printed)")
        if clock.yearless:
            parts.append(f"the lines print no year: placed in {YEARLESS_BASE}, only differences are meaningful")
    if json_times:
        parts.append("wall times from epoch seconds in the JSON records")
    return "; ".join(parts)
