"""The tables of `assignment.toml`: input sets and their distributions, checks and their
parts, intermediates, the consistency and re-run settings, variants, names, policy and the
kernel's environment. Each table is validated and frozen; `model.Spec` puts them together.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grader.errors import GraderError

RESULT_ARG = "@result"  # in a behaviour check's then_args: the first function's result
DISTRIBUTIONS = ("uniform", "normal", "integers", "onehot", "choice")


class Table(BaseModel):
    """One table of the spec: an unknown field is an error, and values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(Table):
    """How one random input is drawn. `shape` may list several shapes: trial i uses shape i mod n."""

    dist: Literal["uniform", "normal", "integers", "onehot", "choice"] = "normal"
    shape: list[int] | list[list[int]] = Field(default_factory=list)
    low: float = -1.0
    high: float = 1.0
    mean: float = 0.0
    scale: float = 1.0
    values: list[float] = Field(default_factory=list)
    # onehot: shape is (classes, count); each column has one 1.

    @field_validator("shape")
    @classmethod
    def _shape_positive(cls, v: list[Any]) -> list[Any]:
        shapes = v if v and isinstance(v[0], list) else [v]
        for s in shapes:
            if any(d < 0 for d in s):
                raise ValueError("dimensions must be non-negative")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Distribution:
        if self.dist == "uniform" and not self.low < self.high:
            raise ValueError("uniform needs low < high")
        if self.dist == "choice" and not self.values:
            raise ValueError("choice needs a non-empty `values` list")
        if self.dist == "onehot" and (len(self.shape) != 2 or isinstance(self.shape[0], list)):
            raise ValueError("onehot needs shape = [classes, count]")
        return self

    def shape_for(self, trial: int) -> tuple[int, ...]:
        """The shape used on a given trial."""
        if self.shape and isinstance(self.shape[0], list):
            return tuple(self.shape[trial % len(self.shape)])  # type: ignore[arg-type]
        return tuple(self.shape)  # type: ignore[arg-type]


class InputSet(Table):
    """Named inputs: literal values, random distributions, or a reference generator function."""

    model_config = ConfigDict(extra="allow", frozen=True)

    generator: str | None = None
    description: str = ""
    # Declared shapes of what a generator produces; `grade validate` checks every draw against them.
    # Like a distribution's `shape`, a list of shapes means trial i has shape i mod n.
    shapes: dict[str, list[int] | list[list[int]]] = Field(default_factory=dict)

    def shape_of(self, name: str, trial: int) -> list[int]:
        """The declared shape of a generated input on a given trial."""
        shape = self.shapes[name]
        if shape and isinstance(shape[0], list):
            return list(shape[trial % len(shape)])  # type: ignore[arg-type]
        return list(shape)  # type: ignore[arg-type]

    @model_validator(mode="before")
    @classmethod
    def _collect(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("an input set is a table of name = value or name = {dist = ...}")
        return data

    @property
    def variables(self) -> dict[str, Distribution | Any]:
        """The declared variables, distributions parsed."""
        out: dict[str, Any] = {}
        for name, raw in (self.model_extra or {}).items():
            out[name] = Distribution.model_validate(raw) if isinstance(raw, dict) else raw
        return out

    @model_validator(mode="after")
    def _validate_vars(self) -> InputSet:
        for name, raw in (self.model_extra or {}).items():
            if isinstance(raw, dict):
                if "dist" not in raw and not set(raw) <= set(Distribution.model_fields):
                    raise ValueError(
                        f"{name}: a table here is a random distribution ({{dist = ...}}); for a "
                        f"dict-valued input write a generator function in the reference and name "
                        f"it in `generator`"
                    )
                try:
                    Distribution.model_validate(raw)
                except ValidationError as e:
                    first = e.errors()[0]
                    loc = ".".join(str(p) for p in first["loc"])
                    where = f"{name}.{loc}" if loc else name
                    raise ValueError(f"{where}: {first['msg']}") from None
            elif not isinstance(raw, (int, float, bool, list)):
                raise ValueError(f"{name}: expected a number, an array or a {{dist = ...}} table")
        return self

    @property
    def is_random(self) -> bool:
        """Whether values change from run to run (generator or any distribution)."""
        return self.generator is not None or any(
            isinstance(v, Distribution) for v in self.variables.values()
        )


class Part(Table):
    """One named part of a structured result (a gradient dict, a tuple)."""

    key: str
    index: int | None = None
    aliases: list[str] = Field(default_factory=list)
    points: float = 1.0
    label: str = ""  # how to say it to a student, e.g. "dL/dW1"
    shape: Literal["strict", "allow_transpose"] | None = None
    rtol: float | None = None
    atol: float | None = None
    axes: list[str] = Field(default_factory=list)  # names of rows/columns for feedback (see Check.axes)


class Consistency(Table):
    """How to rebuild the student's loss from its own functions, for a finite-difference check.

    The student's `forward` is called with `forward_args` (names of the check's inputs; a
    dotted name reaches into a dict input, e.g. "params.W1"); its output (the first item if it
    returns a tuple) goes to the student's `loss` (called as loss(output, *loss_args)) when the
    notebook defines one, else to the reference function `reference_loss` (same arguments).
    `params` maps each part key of the gradient check to the input it differentiates
    (default: the input named like the key).
    """

    forward: str
    forward_aliases: list[str] = Field(default_factory=list)
    forward_args: list[str]
    forward_check: str | None = None  # id of the check that grades the forward pass
    loss: str | None = None
    loss_aliases: list[str] = Field(default_factory=list)
    loss_args: list[str] = Field(default_factory=list)
    reference_loss: str
    params: dict[str, str] = Field(default_factory=dict)
    step: float = Field(default=1e-6, gt=0)
    max_elements: int = Field(default=32, ge=1, le=256)  # per parameter; larger ones are sampled


class Intermediate(Table):
    """A value computed on the way (h, z2, delta2, ...), to say where a wrong answer first goes wrong.

    `names` are what students call it: notebook variables (variable checks) or keys of the
    dict a function returns (function checks). `reference` computes it from the check's args.
    """

    names: list[str]
    reference: str
    label: str
    checks: list[str] = Field(default_factory=list)  # at the top level: the checks it serves


class Rerun(Table):
    """Re-run the notebook with its given sample replaced by fresh values (hard-coding check)."""

    inputs: str  # the input set holding the notebook's given sample (names as the notebook has them)
    fresh: str  # an input set drawing fresh values for the same names


class Check(Table):
    """One thing the grader verifies: a student function or a notebook variable."""

    id: str = ""
    kind: Literal["function", "variable", "behaviour", "class"] = "function"
    target: str
    aliases: list[str] = Field(default_factory=list)
    label: str = ""  # how every output format names the check (default: see grader/judging/labels.py)
    description: str = ""
    inputs: str
    args: list[str] = Field(default_factory=list)  # default: the reference function's parameters
    reference: str = ""  # default: the target's own name
    part: str | int | None = None  # for a single-valued check: which part of the reference result
    # for functions returning a tuple or dict: the element (index or key), or the candidates, holding the answer
    take: int | str | list[int | str] | None = None
    # passed after `args` when the student's function takes them (by name, else by position)
    optional_args: list[str] = Field(default_factory=list)
    # kind = "class": target is the class, built with init_args; `state` (a dict input) is put in
    # its dict attribute `state_attribute` or, key by key, in `state_attributes` (attribute ->
    # key); then `method` is called with args; read = "result" or "state" (the state after the call)
    init_args: list[str] = Field(default_factory=list)
    state: str | None = None
    state_attribute: str | None = None
    state_attributes: dict[str, str] = Field(default_factory=dict)
    method: str | None = None
    read: Literal["result", "state"] = "result"
    # function checks: grade this argument (a name in `args`) as the call leaves it instead of what
    # the function returns (a function that writes into its arguments and returns None);
    # `argument_path` picks a part of it: keys and indices, "*" every element (the picked values
    # then form one flat list). The reference returns the expected value of what is picked.
    argument: str | None = None
    argument_path: list[int | str] = Field(default_factory=list)
    # inputs bound as the notebook's own global names before each call (and restored after it), for
    # functions that read names the notebook binds (`J_W1(x, y)` reading W1 ... b3); the reference
    # gets their values after `args` (see reference_args)
    globals: list[str] = Field(default_factory=list)
    reference_args: list[str] | None = None  # class checks: what the reference gets (default: args, state)
    parts: list[Part] = Field(default_factory=list)
    trials: int = Field(default=1, ge=1, le=50)
    visibility: Literal["public", "hidden"] = "public"
    points: float = 1.0
    rtol: float = Field(default=1e-5, ge=0)
    atol: float = Field(default=1e-8, ge=0)
    shape: Literal["strict", "allow_transpose"] = "strict"
    timeout: float = Field(default=10.0, gt=0)
    # For `grade validate`: the reference function of the scalar loss, taking the same args;
    # the gradient parts of this check must agree with its central finite differences.
    loss: str | None = None
    # kind = "behaviour": call `target`, pass its result to `then` (where then_args says "@result"),
    # and score the accuracy of what `then` returns against the input named by `labels`. The
    # reference is called with args, then_args (without "@result") and labels, and returns the
    # accuracy the reference reaches; passing means reaching it less `margin`.
    then: str | None = None
    then_aliases: list[str] = Field(default_factory=list)
    then_args: list[str] = Field(default_factory=list)
    labels: str | None = None
    margin: float = Field(default=0.05, ge=0, le=1)
    # A behaviour check may also require that `target` returns the network's parameters (key ->
    # shape, keys matched as students spell them) and score the reference's own prediction with
    # them: `predict_with` is a reference function taking then_args, "@result" being those
    # parameters. A `train` that ignores the network then fails even if its `then` classifies well.
    returns: dict[str, list[int]] = Field(default_factory=dict)
    predict_with: str | None = None
    # Feedback: names of the rows / columns of a matrix result, e.g. ["hidden unit", "input"];
    # "{}" marks where the 1-based index goes ("the weights into hidden unit {}").
    axes: list[str] = Field(default_factory=list)
    # Hard-coding check for functions: also call the function on this input set (the notebook's
    # given sample), with `given_args` (default: `args`) in the same positions as `args`.
    given: str | None = None
    given_args: list[str] = Field(default_factory=list)
    # Stability check: also call the function on this input set of extreme but valid values.
    extreme: str | None = None
    stable_hint: str = ""  # what to write instead, said when the result is nan/inf there
    consistency: Consistency | None = None
    # In the order the network computes them (forward, then backward): when this check fails,
    # the student's own intermediate values show where the computation first goes wrong.
    intermediates: list[Intermediate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _defaults(self) -> Check:
        if not self.id:
            object.__setattr__(self, "id", self.target)
        if not self.reference:
            object.__setattr__(self, "reference", self.target)
        if self.parts and self.part is not None:
            raise ValueError("give either `part` or `parts`, not both")
        if self.kind == "behaviour":
            if not self.then or not self.labels or RESULT_ARG not in self.then_args:
                raise ValueError(
                    f'a behaviour check needs `then`, `labels` and "{RESULT_ARG}" in `then_args`'
                )
            if self.parts or self.part is not None:
                raise ValueError("a behaviour check has no parts")
            if bool(self.returns) != bool(self.predict_with):
                raise ValueError("`returns` and `predict_with` go together (the parameters, and how to score them)")
        elif self.returns or self.predict_with:
            raise ValueError("`returns` and `predict_with` belong to behaviour checks")
        _check_class_fields(self)
        _check_call_fields(self)
        keys = [p.key for p in self.parts]
        if len(keys) != len(set(keys)):
            raise ValueError("part keys must be unique")
        return self


def _check_class_fields(c: Check) -> None:
    """A class check names its method and where its state goes; other checks use none of it."""
    used = [f for f in ("init_args", "state", "state_attribute", "state_attributes", "method", "reference_args")
            if getattr(c, f)] + (["read"] if c.read != "result" else [])
    if c.kind != "class":
        if used:
            raise ValueError(f"`{used[0]}` belongs to class checks (kind = \"class\")")
        return
    if not c.method:
        raise ValueError("a class check needs `method`: the method to call")
    unsupported = [f for f in ("given", "extreme", "consistency", "intermediates") if getattr(c, f)]
    if unsupported:
        raise ValueError(f"`{unsupported[0]}` is not supported in class checks")
    if c.state_attribute and c.state_attributes:
        raise ValueError("give either `state_attribute` or `state_attributes`, not both")
    if (c.state_attribute or c.state_attributes) and not c.state:
        raise ValueError("`state_attribute(s)` needs `state`: the input holding the parameters")
    if c.read == "state" and not (c.state_attribute or c.state_attributes):
        raise ValueError('read = "state" needs `state_attribute` or `state_attributes`')


def _check_call_fields(c: Check) -> None:
    """`argument` and `globals` serve calls whose inputs are graded as such: not the side calls."""
    if c.argument_path and c.argument is None:
        raise ValueError("`argument_path` needs `argument`: the argument it reads into")
    if c.argument is not None:
        if c.kind != "function":
            raise ValueError('`argument` belongs to function checks (a class check reads its state: read = "state")')
        if c.args and c.argument not in c.args:
            raise ValueError(f"`argument` {c.argument!r} is not one of `args` ({', '.join(c.args)})")
    if c.globals and c.kind not in ("function", "class"):
        raise ValueError("`globals` belongs to function and class checks")
    if c.argument is not None or c.globals:
        used = [f for f in ("given", "extreme", "consistency", "intermediates") if getattr(c, f)]
        if used:
            which = "`argument`" if c.argument is not None else "`globals`"
            raise ValueError(f"`{used[0]}` is not supported together with {which}")


class Names(Table):
    """The assignment's own names for what built-in explanations talk about."""

    target: str = "t"
    prediction: str = "y"


class Variant(Table):
    """A known wrong answer, computed by a reference function, with its own explanation."""

    name: str
    message: str
    replace: dict[str, str]  # reference function -> variant function in reference.py
    checks: list[str] = Field(default_factory=list)  # limit to these check ids (empty: all)


class Policy(Table):
    """Assignment-wide rules."""

    forbidden_imports: list[str] = Field(default_factory=list)
    forbidden_import_penalty: float = Field(default=0.0, ge=0, le=1)  # fraction of max score
    # gradients computed by finite differences (fraction of max score); unset: as for a
    # forbidden import when the assignment forbids autograd modules, else none
    numerical_gradient_penalty: float | None = Field(default=None, ge=0, le=1)
    hardcoded_scores_zero: bool = True
    cell_timeout: float | None = None

    def numerical_penalty(self) -> float:
        """The penalty for finite-difference gradients, as a fraction of the maximum score."""
        if self.numerical_gradient_penalty is not None:
            return self.numerical_gradient_penalty
        return self.forbidden_import_penalty if self.forbidden_imports else 0.0


class Environment(Table):
    """The kernel's Python packages: pip requirement strings, on top of the default set unless
    `include_default` is false (numpy and ipykernel are always there). Binary wheels only,
    unless `allow_source_builds` lets the installer compile what has none (slow)."""

    packages: list[str] = Field(default_factory=list)
    include_default: bool = True
    allow_source_builds: bool = False

    @field_validator("packages")
    @classmethod
    def _requirements(cls, v: list[str]) -> list[str]:
        # only that each is a valid requirement string: building is for when it is used
        from grader.assignment.requirements import requirement_names

        try:
            requirement_names(v)
        except GraderError as e:
            raise ValueError(str(e)) from None
        return v
