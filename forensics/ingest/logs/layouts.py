"""Line layouts: the fixed shape a metric line keeps for a whole run, learned from one parsed line.

A training loop prints the same line over and over with only the numbers changing. A `Layout` is
that line with its numbers cut out: literal byte strings around number slots. `_scan.scan` (C)
checks many following lines against it at once and returns their numbers; `fast` then applies
them to the reader's state exactly as the per-line path would.

A layout is only learned when every line it can match is bound to be read the same way by the
per-line path, whatever numbers it holds. The per-format builders (`hf_layout`, `megatron_layout`,
`key_value_layout`) accept only a strict version of each format's syntax; `_sound` then checks what
no number can change: the line starts with no timestamp, rank prefix or escape; no format earlier
in the registry can claim the line; no event pattern can fire on it; and each slot is followed by a
byte that cannot continue a number, so the number's extent is the same for the C scan and for
the format's regex. Slots accept a strict subset of the formats' NUMBER (ASCII digits; `nan` and
`inf` in the six spellings NUMBER lists; `--inf`, which NUMBER matches but float() refuses, is
left to the per-line path), so anything unusual simply falls back to the per-line path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from forensics.ingest.logs import events
from forensics.ingest.logs.formats import FORMATS, key_value, megatron, parse_line
from forensics.ingest.logs.formats.base import Parsed

VALUE, STEP, EPOCH, IGNORED = "value", "step", "epoch", "ignored"
# What stands in for a slot when checking that no hint or trigger can appear around it.
_SAMPLE_NUMBERS = ("0", "nan", "NaN", "NAN", "inf", "Inf", "INF", "-1", "+1", "1e-1", "1E+1", ".5")
_SAMPLE_DIGITS = ("0", "12")
_NUMBER_CHARS = frozenset("0123456789.+-eEnaNAifIF")
_TOKEN = r"[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|nan|NaN|NAN|inf|Inf|INF)"
_PRINTABLE = re.compile(r"[ -~]*")


@dataclass(frozen=True)
class Layout:
    """Literals around number slots; what each slot is (`roles`) and, for values, its tag."""

    format_name: str
    literals: tuple[bytes, ...]
    kinds: bytes
    roles: tuple[str, ...]
    tags: tuple[str | None, ...]
    event_slots: tuple[int, ...] = ()  # slots whose value > 0 makes the line an event (per-line path)

    @property
    def value_slots(self) -> list[int]:
        """Indices of the slots that are series values, in the order the per-line parser adds them."""
        return [index for index, role in enumerate(self.roles) if role == VALUE]

    @property
    def value_tags(self) -> list[str]:
        """The tags of `value_slots`, in the same order."""
        return [self.tags[index] for index in self.value_slots]


def _pieces(line: str, spans: list[tuple[int, int, str]]) -> tuple[list[str], bytes] | None:
    """Literals between the slot spans and the slots' kinds; the spaces before a slot belong to it.

    `spans` holds (start, end, kind) with kind 'f' (number), 'u' (plain decimal) or 'd' (digits).
    The kinds are those of `_scan.c`.
    A slot whose literal ends in a word character needs at least one space (upper-case kind): `loss
    0.5` must not match `loss0.5`, which every format reads differently.
    """
    literals, kinds, cursor = [], bytearray(), 0
    for start, end, kind in spans:
        literal = line[cursor:start]
        stripped = literal.rstrip(" ")
        if stripped and (stripped[-1].isalnum() or stripped[-1] in "_.+-"):
            if stripped == literal:
                return None  # a number glued to a word: no layout
            kind = kind.upper()
        literals.append(stripped)
        kinds.append(ord(kind))
        cursor = end
    literals.append(line[cursor:])
    return literals, bytes(kinds)


def _variants(literals: list[str], kinds: bytes) -> list[str]:
    """The line with every slot replaced by sample spaces and numbers (the same sample in all slots)."""
    lines = []
    for padding in ("", " ", "  "):
        for sample in _SAMPLE_NUMBERS:
            parts = [literals[0]]
            for kind, literal in zip(kinds, literals[1:]):
                kind = chr(kind)
                number = sample if kind in "fF" else _SAMPLE_DIGITS[len(sample) % 2]
                spaces = padding or (" " if kind.isupper() else "")
                parts.append(spaces + number + literal)
            lines.append("".join(parts))
    return lines


def _sound(format_name: str, literals: list[str], kinds: bytes) -> bool:
    """What no number can change: see the module docstring."""
    if not literals[0] or not all(_PRINTABLE.fullmatch(literal) for literal in literals):
        return False
    first = literals[0][0]
    lead = literals[0].lstrip()
    if first.isdigit() or first in "[IWEF" or not lead or lead.startswith(("[", "rank")):
        return False  # a timestamp or rank prefix (clock and rank state change per line)
    for literal in literals[1:]:
        if literal and (literal[0] in _NUMBER_CHARS or literal[0].isalnum() or literal[0] in "_%"):
            return False  # the number's extent would depend on the number
    variants = _variants(literals, kinds)
    position = next(index for index, line_format in enumerate(FORMATS) if line_format.name == format_name)
    for line_format in FORMATS[:position]:
        hints = line_format.hints
        if line_format.name == "free_text":  # it needs a capitalised counter word as well as a hint
            hints = ("Epoch", "Step", "Iter")
        if any(hint in line for hint in hints for line in variants):
            return False
    for line in variants:
        lowered = line.lower()
        if any(trigger in lowered for trigger in events.TRIGGERS if trigger != "nan"):
            return False
        if events.RESUME.search(line) or "\x1b" in line or "\r" in line:
            return False
    return True


def _finish(format_name: str, line: str, spans, roles, tags, event_slots=()) -> Layout | None:
    built = _pieces(line, spans)
    if built is None or not _sound(format_name, *built):
        return None
    literals, kinds = built
    if VALUE not in roles:
        return None
    layout = Layout(format_name, tuple(literal.encode("ascii") for literal in literals), kinds, tuple(roles),
                    tuple(tags), tuple(event_slots))
    return layout if all(_reads_as(layout, variant) for variant in _variants(literals, kinds)) else None


def _reads_as(layout: Layout, line: str) -> bool:
    """A second line of defence behind the rules above: the per-line parser reads a sample line of the
    layout as the layout says (same format, same tags in the same order, a step exactly when a slot
    is the step, nothing else)."""
    try:
        result = parse_line(line)
    except (ValueError, OverflowError):  # Megatron's int(inf) of an event slot: such lines take the per-line path
        return bool(layout.event_slots)
    if result is None or result[0].name != layout.format_name:
        return False
    parsed = result[1]
    tags = [layout.tags[index] for index in layout.value_slots]
    return (list(parsed.values) == tags and (parsed.step is not None) == (STEP in layout.roles)
            and (parsed.epoch is not None) == (EPOCH in layout.roles)
            and parsed.progress is None and not parsed.facts and parsed.wall_time is None
            and parsed.step_basis is None and (not parsed.events or bool(layout.event_slots)))


_HF_PAIR = re.compile(rf"'([ -&(-~]+?)': ({_TOKEN})(?=, '|\}}$)")


def hf_layout(line: str, parsed: Parsed) -> Layout | None:
    """`{'loss': 0.69, 'learning_rate': 2e-05, 'epoch': 0.05}` and nothing else on the line."""
    if not line.startswith("{'") or not line.endswith("}") or "{" in line[1:] or "}" in line[:-1]:
        return None
    pairs = list(_HF_PAIR.finditer(line))
    rebuilt = "{" + ", ".join(match.group(0) for match in pairs) + "}"
    keys = [match.group(1) for match in pairs]
    if rebuilt != line or len(set(keys)) != len(keys) or parsed.progress is not None or parsed.facts:
        return None
    if any(key in keys for key in ("train_runtime", "total_flos")):
        return None  # the end-of-training summary gives no series
    roles = [STEP if key == "step" else EPOCH if key == "epoch" else VALUE for key in keys]
    tags = [key if role == VALUE else None for key, role in zip(keys, roles)]
    spans = [(match.start(2), match.end(2), "u" if role == STEP else "f") for match, role in zip(pairs, roles)]
    return _finish("hf_trainer_dict", line, spans, roles, tags)


_MEGATRON = re.compile(r" iteration +([0-9]{1,15})/ *([0-9]{1,15}) \|((?: [A-Za-z][ -9;-{}~]*?: *"
                       rf"{_TOKEN} \|)+)")
_MEGATRON_FIELD = re.compile(rf" ([A-Za-z][ -9;-{{}}~]*?): *({_TOKEN}) \|")


def megatron_layout(line: str, parsed: Parsed) -> Layout | None:
    """Megatron-LM's ` iteration N/ M | key: value | ... |` as `training_log` prints it."""
    match = _MEGATRON.fullmatch(line)
    if not match or parsed.events:
        return None
    fields = list(_MEGATRON_FIELD.finditer(line, match.start(3)))
    keys = [field.group(1) for field in fields]
    if len(set(keys)) != len(keys) or any(key != key.rstrip() for key in keys):
        return None
    spans = [(match.start(1), match.end(1), "d"), (match.start(2), match.end(2), "d")]
    spans += [(field.start(2), field.end(2), "f") for field in fields]
    roles = [STEP, IGNORED] + [VALUE] * len(keys)
    tags = [None, None] + keys
    event_slots = [2 + keys.index(key) for key in (megatron.SKIPPED, megatron.NAN_ITERATIONS) if key in keys]
    return _finish("megatron", line, spans, roles, tags, event_slots)


_KV_PAIR = re.compile(rf"([A-Za-z_][A-Za-z0-9_]*(?: [A-Za-z_][A-Za-z0-9_]*)?)(?: |=|: )({_TOKEN})(?:/([0-9]{{1,15}}))?")


def key_value_layout(line: str, parsed: Parsed) -> Layout | None:
    """`epoch 0 step 10/600 loss 0.6931 lr 4.737e-04`: single-spaced pairs, exactly as key_value reads them."""
    if "(" in line or parsed.progress is not None:
        return None
    found = list(key_value.PAIR.finditer(line))
    if " ".join(match.group(0) for match in found) != line:
        return None  # only pairs, one space apart: nothing the pair pattern skips over
    spans, roles, tags, seen = [], [], [], set()
    for match in found:
        strict = _KV_PAIR.fullmatch(match.group(0))
        key, number, percent, total = match.groups()
        lowered = key.lower()
        if not strict or percent or strict.group(1) != key or lowered in seen:
            return None
        seen.add(lowered)
        if lowered in key_value.STEP_KEYS:
            if key_value.STEP_KEYS & (seen - {lowered}) or not number.replace(".", "", 1).isdigit():
                return None  # a second step key, or a step the per-line path would drop
            role, kind = STEP, "u"
        elif lowered == "epoch":
            role, kind = EPOCH, "f"
        elif lowered in key_value.COUNTER_KEYS:
            role, kind = IGNORED, "f"
        else:
            role, kind = VALUE, "f"
        spans.append((match.start(2), match.end(2), kind))
        roles.append(role)
        tags.append(key if role == VALUE else None)
        if total is not None:
            spans.append((match.start(4), match.end(4), "d"))
            roles.append(IGNORED)
            tags.append(None)
    return _finish("key_value", line, spans, roles, tags)


BUILDERS = {"hf_trainer_dict": hf_layout, "megatron": megatron_layout, "key_value": key_value_layout}
