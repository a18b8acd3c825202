"""Assignment specs: `assignment.toml` read, validated and located.

An assignment is a folder: `assignment.toml` (this model), `reference.py` (the torch
reference), `starter.ipynb` and `solution.ipynb`. Nothing about a particular assignment
lives in the grader.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from grader.assignment import defaults as spec_defaults
from grader.cachefiles import PACKAGE_DIR, hash_package_files, hash_python_files, write_atomic
from grader.errors import GraderError, SpecError, UnknownAssignment

SPEC_FILE = "assignment.toml"
ENTRY_POINT_GROUP = "nngrader.assignments"  # courses' packages of assignments register here
SHIPPED_PACKAGE = "nngrader_assignments"  # the top-level `assignments/` folder, once installed


def _shipped_assignments() -> Path:
    """The assignments shipped with the grader: the checkout's `assignments/`, else the installed package."""
    root = PACKAGE_DIR.parent
    checkout = root / "assignments"
    if checkout.is_dir() and (root / "pyproject.toml").is_file():  # (not some site-packages/assignments)
        return checkout
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return checkout


PACKAGE_ASSIGNMENTS = _shipped_assignments()
RESULT_ARG = "@result"  # in a behaviour check's then_args: the first function's result
DISTRIBUTIONS = ("uniform", "normal", "integers", "onehot", "choice")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Strict):
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


class InputSet(_Strict):
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


class Part(_Strict):
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


class Consistency(_Strict):
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


class Intermediate(_Strict):
    """A value computed on the way (h, z2, delta2, ...), to say where a wrong answer first goes wrong.

    `names` are what students call it: notebook variables (variable checks) or keys of the
    dict a function returns (function checks). `reference` computes it from the check's args.
    """

    names: list[str]
    reference: str
    label: str
    checks: list[str] = Field(default_factory=list)  # at the top level: the checks it serves


class Rerun(_Strict):
    """Re-run the notebook with its given sample replaced by fresh values (hard-coding check)."""

    inputs: str  # the input set holding the notebook's given sample (names as the notebook has them)
    fresh: str  # an input set drawing fresh values for the same names


class Check(_Strict):
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
    unsupported = [f for f in ("given", "extreme", "consistency", "intermediates", "loss") if getattr(c, f)]
    if unsupported:
        raise ValueError(f"`{unsupported[0]}` is not supported in class checks")
    if c.state_attribute and c.state_attributes:
        raise ValueError("give either `state_attribute` or `state_attributes`, not both")
    if (c.state_attribute or c.state_attributes) and not c.state:
        raise ValueError("`state_attribute(s)` needs `state`: the input holding the parameters")
    if c.read == "state" and not (c.state_attribute or c.state_attributes):
        raise ValueError('read = "state" needs `state_attribute` or `state_attributes`')


class Names(_Strict):
    """The assignment's own names for what built-in explanations talk about."""

    target: str = "t"
    prediction: str = "y"


class Variant(_Strict):
    """A known wrong answer, computed by a reference function, with its own explanation."""

    name: str
    message: str
    replace: dict[str, str]  # reference function -> variant function in reference.py
    checks: list[str] = Field(default_factory=list)  # limit to these check ids (empty: all)


class Policy(_Strict):
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


class Environment(_Strict):
    """The kernel's Python packages: pip requirement strings, on top of the default set unless
    `include_default` is false (numpy and ipykernel are always there)."""

    packages: list[str] = Field(default_factory=list)
    include_default: bool = True

    @field_validator("packages")
    @classmethod
    def _requirements(cls, v: list[str]) -> list[str]:
        # only that each is a valid requirement string: building is for when it is used
        from grader.kernels.envs import requirement_names

        try:
            requirement_names(v)
        except GraderError as e:
            raise ValueError(str(e)) from None
        return v


class Spec(_Strict):
    """The whole `assignment.toml`."""

    id: str
    title: str
    version: str = "1"
    description: str = ""
    reference: str = "reference.py"
    files: list[str] = Field(default_factory=list)
    # Aliases: the built-in ones (grader/assignment/aliases.py) unless switched off, plus these, by name.
    builtin_aliases: bool = True
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    policy: Policy = Field(default_factory=Policy)
    environment: Environment = Field(default_factory=Environment)
    inputs: dict[str, InputSet]
    checks: list[Check]
    variants: list[Variant] = Field(default_factory=list)
    intermediates: list[Intermediate] = Field(default_factory=list)  # shared by the checks they name
    rerun: Rerun | None = None
    names: Names = Field(default_factory=Names)

    @model_validator(mode="after")
    def _cross(self) -> Spec:
        self._cross_extra()
        ids = {c.id for c in self.checks}
        for k, im in enumerate(self.intermediates):
            unknown = [c for c in im.checks if c not in ids] or ([] if im.checks else ["(none named)"])
            if unknown:
                raise _FieldError(f"intermediates[{k}].checks", f"names no check of this spec: {unknown}")
        ids = [c.id for c in self.checks]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate check ids: {sorted(dup)}")
        for i, c in enumerate(self.checks):
            if c.inputs not in self.inputs:
                raise _FieldError(
                    f"checks[{i}].inputs",
                    f"check {c.id!r} uses input set {c.inputs!r}, which is not defined "
                    f"(defined: {sorted(self.inputs)})",
                )
            declared = self.inputs[c.inputs].variables
            if self.inputs[c.inputs].generator is None:
                named = [*c.args, *[a for a in c.then_args if a != RESULT_ARG], *c.optional_args]
                named += [*c.init_args, *([c.state] if c.state else []), *(c.reference_args or [])]
                named += [c.labels] if c.labels else []
                for a in named:
                    if a not in declared:
                        raise _FieldError(
                            f"checks[{i}].args",
                            f"check {c.id!r} passes {a!r}, which input set {c.inputs!r} does not define",
                        )
        return self


    def _cross_extra(self) -> None:
        """Input sets named by the diagnosis fields (given, extreme, rerun) exist and fit."""
        for i, c in enumerate(self.checks):
            for field in ("given", "extreme"):
                name = getattr(c, field)
                if name is not None and name not in self.inputs:
                    raise _FieldError(f"checks[{i}].{field}", f"check {c.id!r} names input set {name!r}, which is not defined")
            if c.given_args and len(c.given_args) != len(c.args):
                raise _FieldError(f"checks[{i}].given_args", "given_args must list one name per entry of args")
            if c.given and self.inputs[c.given].generator is None:
                declared = self.inputs[c.given].variables
                for a in c.given_args or c.args:
                    if a not in declared:
                        raise _FieldError(f"checks[{i}].given_args", f"input set {c.given!r} does not define {a!r}")
        if self.rerun is not None:
            for field in ("inputs", "fresh"):
                if getattr(self.rerun, field) not in self.inputs:
                    raise _FieldError(f"rerun.{field}", f"input set {getattr(self.rerun, field)!r} is not defined")
            given = set(self.inputs[self.rerun.inputs].variables)
            fresh = set(self.inputs[self.rerun.fresh].variables)
            if self.inputs[self.rerun.fresh].generator is None and not given <= fresh:
                raise _FieldError("rerun.fresh", f"input set {self.rerun.fresh!r} must define {sorted(given - fresh)}")


class _FieldError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Assignment:
    """A loaded assignment folder: its spec, where it lives, and its fingerprint."""

    def __init__(self, folder: Path, spec: Spec, spec_sha256: str):
        self.folder = folder
        self.spec = spec
        self.spec_sha256 = spec_sha256

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def max_score(self) -> float:
        return sum(
            sum(p.points for p in c.parts) if c.parts else c.points for c in self.spec.checks
        )

    def path(self, name: str) -> Path:
        """A file of the assignment folder."""
        return self.folder / name

    def __repr__(self) -> str:
        return f"Assignment({self.id!r}, {str(self.folder)!r})"


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """A field's path as the docs write it: checks[2].take, inputs.given.x."""
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif not str(p).startswith("function-"):
            out += f".{p}" if out else str(p)
    return out


def _format_validation_error(file: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():  # all of them: fixing one at a time costs a round each
        loc = field_path(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{file}: {loc or '(top level)'}: {msg}")
    return "; ".join(lines)


def load_spec(folder: Path) -> Assignment:
    """Read and validate `folder/assignment.toml` and check its reference file exists."""
    file = folder / SPEC_FILE
    try:
        raw_bytes = file.read_bytes()
    except OSError as e:
        raise SpecError(f"{file}: cannot read the spec ({e.strerror or e})") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SpecError(f"{file}: not valid TOML ({e})") from None
    sha = hashlib.sha256(raw_bytes).hexdigest()
    cache = _completed_cache(folder, sha)
    spec = _from_cache(cache)
    if spec is None:
        spec, raw = _complete_and_check(folder, file, raw, sha)
        _store(cache, raw)
    if not (folder / spec.reference).is_file():
        raise SpecError(f"{file}: reference: file {spec.reference!r} does not exist in {folder}")
    for name in spec.files:
        if not (folder / name).exists():
            raise SpecError(f"{file}: files: {name!r} does not exist in {folder}")
    return Assignment(folder.resolve(), spec, sha)


def _complete_and_check(folder: Path, file: Path, raw: dict[str, Any], sha: str) -> tuple[Spec, dict[str, Any]]:
    """The spec with its defaults inferred from the reference, which is run once on each check."""
    module = _reference_module(folder, raw, sha)
    try:
        sampler = spec_defaults.Sampler(raw, module)
        raw = spec_defaults.complete(raw, module, sampler)
        spec = Spec.model_validate(raw)
        spec_defaults.check_results(spec, sampler)
    except SpecError as e:
        raise SpecError(f"{file}: {e}") from None
    except ValidationError as e:
        cause = e.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, _FieldError):
            raise SpecError(f"{file}: {cause.field}: {cause}") from None
        raise SpecError(_format_validation_error(file, e)) from None
    return spec, raw


# Inferring a spec's defaults runs its reference (torch): the completed table of a spec that
# loaded is remembered, keyed by the spec, every Python file beside it and the grader code that
# infers, so listing or grading an assignment again starts without torch.
_SPEC_CACHE_VERSION = 1
_INFERRING_CODE = ("assignment/*.py",)  # the spec model, its defaults, aliases and inputs


def _completed_cache(folder: Path, sha: str) -> Path | None:
    from grader.options import cache_dir

    base = cache_dir()
    if base is None:
        return None
    h = hashlib.sha256(f"{_SPEC_CACHE_VERSION}:{sha}".encode())
    try:
        hash_python_files(h, folder)
        hash_package_files(h, _INFERRING_CODE)
    except OSError:
        return None
    return base / "specs" / f"{h.hexdigest()}.json"


def _from_cache(cache: Path | None) -> Spec | None:
    if cache is None:
        return None
    try:
        return Spec.model_validate(json.loads(cache.read_text()))
    except (OSError, ValueError, ValidationError):  # absent, partial or stale: infer again
        return None


def _store(cache: Path | None, raw: dict[str, Any]) -> None:
    if cache is None:
        return
    try:
        data = json.dumps(raw).encode()
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, data, ".spec-")
    except (OSError, TypeError, ValueError):  # not remembered: inferred again next time
        pass


def _reference_module(folder: Path, raw: dict[str, Any], sha: str) -> ModuleType | None:
    """The reference module the defaults are inferred from (None if there is no such file yet)."""
    name = raw.get("reference", "reference.py")
    path = folder / name if isinstance(name, str) else None
    if path is None or not path.is_file():
        return None
    from grader.assignment.reference import import_reference  # (expected imports this module)

    return import_reference(path, sha)


def search_path() -> list[Path]:
    """Folders holding assignment folders, first match winning.

    $GRADER_ASSIGNMENTS (os.pathsep-separated), then the folders of installed packages
    registered in the `nngrader.assignments` entry-point group (by entry-point name), then
    the assignments shipped with the grader.
    """
    extra = [Path(p) for p in os.environ.get("GRADER_ASSIGNMENTS", "").split(os.pathsep) if p]
    return [*extra, *registered_folders(), PACKAGE_ASSIGNMENTS]


def registered_folders() -> list[Path]:
    """Folders named by the `nngrader.assignments` entry points of installed packages.

    An entry point names a package (its folder holds assignment folders) or a callable
    returning such a folder. One that fails to load is left out: a broken course package
    must not stop the grader from grading the others.
    """
    folders: list[Path] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            obj = ep.load()
            if hasattr(obj, "__path__"):
                folders.extend(Path(p) for p in obj.__path__)
            elif hasattr(obj, "__file__"):
                folders.append(Path(obj.__file__).parent)
            elif callable(obj):
                folders.append(Path(obj()))
        except Exception:  # noqa: BLE001 (see above)
            continue
    return folders


def known_assignments() -> dict[str, Path]:
    """Assignment id (folder name) -> folder, first match on the search path winning."""
    found: dict[str, Path] = {}
    for root in search_path():
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if (child / SPEC_FILE).is_file() and child.name not in found:
                found[child.name] = child
    return found


def find_assignment(name: str) -> Assignment:
    """Load an assignment named by id or by a folder path (for the command line and the API only)."""
    known = known_assignments()
    if name in known:
        return load_spec(known[name])
    if not _looks_like_path(name):  # a bare name is an id: never a folder that happens to be here
        hint = (f" (for the folder {name!r} here, write ./{name})" if Path(name).is_dir() else
                "; for an assignment folder elsewhere, pass its path (--assignment ./FOLDER) or add "
                "the folder holding it to GRADER_ASSIGNMENTS")
        raise UnknownAssignment(f"unknown assignment {name!r}; known assignments: {_known_ids(known)}{hint}")
    p = Path(name).expanduser()
    if p.is_file() and p.name == SPEC_FILE:
        p = p.parent
    if p.is_dir():
        if not (p / SPEC_FILE).is_file():
            raise UnknownAssignment(f"{p} is not an assignment folder: it has no {SPEC_FILE}")
        return load_spec(p)
    raise UnknownAssignment(f"unknown assignment {name!r}; known assignments: {_known_ids(known)}")


def find_known_assignment(name: str) -> Assignment:
    """Load an assignment the grader already knows, by id only.

    What a submission names (its metadata) goes through here: a folder path in a notebook
    would let the submission choose the reference code the grader imports.
    """
    known = known_assignments()
    if name in known:
        return load_spec(known[name])
    raise UnknownAssignment(
        f"the notebook names assignment {name[:80]!r}, which is not one the grader knows "
        f"(known assignments: {_known_ids(known)}); pass --assignment to choose one"
    )


def _looks_like_path(name: str) -> bool:
    return "/" in name or os.sep in name or name.startswith((".", "~")) or name.endswith(SPEC_FILE)


def _known_ids(known: dict[str, Path]) -> str:
    return ", ".join(sorted(known)) or "(none)"
