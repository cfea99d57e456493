"""A schedule written like its constructor, e.g. `OneCycleLR(max_lr=3e-3, total_steps=58285)`.

`parse_spec` reads the text with `ast.parse(mode="eval")` and walks the tree with a whitelist:
calls of known scheduler names, numbers (with unary minus), strings, True/False/None and lists.
Nothing is ever evaluated, so `__import__('os').system('x')`, attribute access, lambdas and
comprehensions are refused with a one-line message naming the offending part.

Keyword names are checked against the real torch constructor's signature, so the accepted
arguments cannot drift from torch. HF Trainer schedule names (`linear`, `cosine`, ...) are
accepted with their warmup/total arguments (see `forensics.schedule.hf`).
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass, field
from typing import Any

from forensics.errors import ForensicsError
from forensics.schedule.hf import HF_ARGUMENT_ALIASES, HF_ARGUMENTS, HF_SCHEDULES

# Torch classes a spec may name. LambdaLR/MultiplicativeLR need a function and ReduceLROnPlateau
# needs the monitored metric, so none of them can be written down and replayed.
TORCH_SCHEDULERS = (
    "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "SequentialLR", "ChainedScheduler",
)
UNREPLAYABLE = {
    "LambdaLR": "needs a Python function, which a spec cannot carry; use an HF name (linear, cosine, ...) "
                "or the torch class it is equivalent to",
    "MultiplicativeLR": "needs a Python function, which a spec cannot carry",
    "ReduceLROnPlateau": "depends on the monitored metric, so there is no schedule to replay",
}
COMPOSITES = ("SequentialLR", "ChainedScheduler")
# Arguments that are not part of the schedule (the optimizer is ours; these are not plain data).
_NOT_ARGUMENTS = {"optimizer", "last_epoch", "verbose", "schedulers", "scale_fn"}
MAX_SPEC_CHARS = 4000


@dataclass(frozen=True)
class ScheduleSpec:
    """One scheduler constructor call: class (torch name or HF name), arguments, child schedules."""

    class_name: str
    params: dict = field(default_factory=dict)
    children: tuple["ScheduleSpec", ...] = ()

    @property
    def is_hf(self) -> bool:
        """True for an HF Trainer schedule name (`linear`, `cosine`, ...)."""
        return self.class_name in HF_SCHEDULES

    def text(self) -> str:
        """The spec as constructor-like text that `parse_spec` reads back to an equal spec."""
        parts = []
        if self.children:
            parts.append("[" + ", ".join(child.text() for child in self.children) + "]")
        parts += [f"{name}={_literal(value)}" for name, value in self.params.items()]
        return f"{self.class_name}({', '.join(parts)})"


def parse_spec(text: str) -> ScheduleSpec:
    """Parse constructor-like text into a `ScheduleSpec`; raises `ForensicsError` naming the bad part."""
    if len(text) > MAX_SPEC_CHARS:
        raise ForensicsError(f"--schedule: {len(text)} characters is more than the {MAX_SPEC_CHARS} allowed")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise ForensicsError(f"--schedule: not a constructor call ({error.msg} at column {error.offset}): "
                             f"{text!r}") from None
    return _call(tree.body, text)


def _call(node: ast.AST, text: str) -> ScheduleSpec:
    if not isinstance(node, ast.Call):
        raise _refuse(node, text, "expected a scheduler call such as CosineAnnealingLR(T_max=100)")
    if not isinstance(node.func, ast.Name):
        raise _refuse(node.func, text, "only a plain scheduler name may be called (no attributes or expressions)")
    name = node.func.id
    if name in UNREPLAYABLE:
        raise _refuse(node.func, text, f"{name} {UNREPLAYABLE[name]}")
    if name not in TORCH_SCHEDULERS and name not in HF_SCHEDULES:
        known = ", ".join(TORCH_SCHEDULERS + tuple(HF_SCHEDULES))
        raise _refuse(node.func, text, f"unknown scheduler {name!r}; known: {known}")
    if name in HF_SCHEDULES:
        return _hf_call(node, name, text)
    allowed = constructor_arguments(name)
    params: dict[str, Any] = {}
    positional = list(node.args)
    children: tuple[ScheduleSpec, ...] = ()
    if name in COMPOSITES:
        child_list = _take_children(node, positional, text)
        children = tuple(_call(child, text) for child in child_list.elts)
        if not children:
            raise _refuse(node, text, f"{name} needs at least one scheduler in its list")
    if len(positional) > len(allowed):
        raise _refuse(positional[len(allowed)], text, f"{name} takes at most {len(allowed)} positional arguments "
                                                      f"besides the optimizer")
    for argument_name, value in zip(allowed, positional):
        params[argument_name] = _literal_value(value, text)
    for keyword in node.keywords:
        if keyword.arg is None:
            raise _refuse(keyword.value, text, "** arguments are not allowed")
        if keyword.arg == "schedulers" and name in COMPOSITES:
            continue  # taken by _take_children
        if keyword.arg not in allowed:
            raise _refuse(keyword.value, text, f"{name} has no argument {keyword.arg!r}; "
                                               f"it takes {', '.join(allowed)}")
        if keyword.arg in params:
            raise _refuse(keyword.value, text, f"argument {keyword.arg!r} given twice")
        params[keyword.arg] = _literal_value(keyword.value, text)
    return ScheduleSpec(name, params, children)


def _take_children(node: ast.Call, positional: list[ast.AST], text: str) -> ast.List:
    """Remove and return the `schedulers` list of a SequentialLR / ChainedScheduler call."""
    keyword = next((k for k in node.keywords if k.arg == "schedulers"), None)
    if keyword is not None:
        found = keyword.value
    elif positional:
        found = positional.pop(0)
    else:
        raise _refuse(node, text, f"{node.func.id} needs its list of schedulers as first argument")
    if not isinstance(found, (ast.List, ast.Tuple)):
        raise _refuse(found, text, "the schedulers argument must be a list of scheduler calls")
    return found


def _hf_call(node: ast.Call, name: str, text: str) -> ScheduleSpec:
    if node.args:
        raise _refuse(node.args[0], text, f"give the arguments of {name} by name: "
                                          f"{', '.join(HF_ARGUMENTS)}")
    params: dict[str, Any] = {}
    for keyword in node.keywords:
        canonical = HF_ARGUMENT_ALIASES.get(keyword.arg or "")
        if canonical is None:
            raise _refuse(keyword.value, text, f"{name} has no argument {keyword.arg!r}; it takes "
                                               f"{', '.join(sorted(HF_ARGUMENT_ALIASES))}")
        params[canonical] = _literal_value(keyword.value, text)
    return ScheduleSpec(name, params)


def constructor_arguments(name: str) -> list[str]:
    """The torch constructor's arguments, in order, without the optimizer and the bookkeeping ones."""
    import torch.optim.lr_scheduler as lr_scheduler  # lazily: importing torch costs ~2 s

    signature = inspect.signature(getattr(lr_scheduler, name))
    return [p for p in signature.parameters if p not in _NOT_ARGUMENTS]


def _literal_value(node: ast.AST, text: str) -> Any:
    """A plain literal: number, -number, string, True/False/None, or a list of those."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and isinstance(node.operand.value, (int, float)) \
            and not isinstance(node.operand.value, bool):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal_value(item, text) for item in node.elts]
    raise _refuse(node, text, "only numbers, strings, True/False/None and lists are allowed as arguments")


def _refuse(node: ast.AST, text: str, why: str) -> ForensicsError:
    segment = ast.get_source_segment(text.strip(), node) or type(node).__name__
    if len(segment) > 60:
        segment = segment[:57] + "..."
    column = getattr(node, "col_offset", None)
    where = f" at column {column + 1}" if column is not None else ""
    return ForensicsError(f"--schedule: {why} (in {segment!r}{where})")


def _literal(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)
