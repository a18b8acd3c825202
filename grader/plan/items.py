"""What the plan asks the kernel: one `ProbeItem` per call of a student function or read of a
variable, with the grader-chosen inputs (never the expected values). The run stage sends them
(grader/run/probe.py); the plan only says what they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProbeItem:
    """One call of a student function, or one read of a variable."""

    id: str
    kind: str  # "function" | "variable"
    names: list[str]
    args: list[Any] = field(default_factory=list)
    argnames: list[str] = field(default_factory=list)
    # kind "pipeline": the first call's result is passed to `then_names` where then_args holds RESULT
    then_names: list[str] = field(default_factory=list)
    then_args: list[Any] = field(default_factory=list)
    fp_raise: bool = False  # call with numpy overflow raising FloatingPointError
    # also call it with column/row vectors passed as 1-D arrays ("flat") and as rows ("row"),
    # for notebooks written in another vector convention
    alternates: bool = False
    watch: bool = False  # note whether the call evaluates notebook code on one-element perturbations
    keep_result: bool = False  # kind "pipeline": also bring back what the first function returned
    optional: list[Any] = field(default_factory=list)  # passed too when the function takes them
    optnames: list[str] = field(default_factory=list)
    # kind "class": names are the class; built with init_args, given `state`, then `method` is called
    init_args: list[Any] = field(default_factory=list)
    init_names: list[str] = field(default_factory=list)
    state: dict[str, Any] | None = None
    state_attribute: str | None = None
    state_attributes: dict[str, str] = field(default_factory=dict)
    method: str = ""
    read: str = "result"
    # bound as the notebook's global names for the call, then restored
    globals: dict[str, Any] = field(default_factory=dict)
    # kind "function": the position of the argument graded as the call leaves it (-1: the result),
    # and the path of the part of it to read ("*": every element, into one flat list)
    argument: int = -1
    argument_path: list[Any] = field(default_factory=list)


RESULT = object()  # placeholder in ProbeItem.then_args for the first call's result
