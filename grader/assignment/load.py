"""Loading and finding assignments: `assignment.toml` read, completed with the defaults inferred
from its reference, validated, and remembered; assignments found by id among those installed,
registered by courses' packages and shipped with the grader, or by folder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import tomllib
from pydantic import ValidationError

from grader.assignment.model import SPEC_FILE, Assignment, FieldError, Spec
from grader.cachefiles import PACKAGE_DIR, hash_package_files, hash_python_files, write_atomic
from grader.errors import SpecError, UnknownAssignment

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
    # (here: a spec whose completed table is remembered loads without numpy, torch or the reference)
    from grader.assignment import defaults as spec_defaults

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
        if isinstance(cause, FieldError):
            raise SpecError(f"{file}: {cause.field}: {cause}") from None
        raise SpecError(_format_validation_error(file, e)) from None
    return spec, raw


# Inferring a spec's defaults runs its reference (torch): the completed table of a spec that
# loaded is remembered, keyed by the spec, every Python file beside it and the grader code that
# infers, so listing or grading an assignment again starts without torch.
_SPEC_CACHE_VERSION = 1
_INFERRING_CODE = ("assignment/*.py",)  # the whole stage: model, loading, defaults, inputs, reference


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
    from grader.assignment.reference import import_reference  # (only when defaults are inferred)

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
    return list(_registered(entry_points, int(time.monotonic() // _REGISTERED_FRESH_S)))


_REGISTERED_FRESH_S = 10  # a long-running service sees a course package installed since within this


@functools.lru_cache(maxsize=4)
def _registered(lookup: Callable[..., Any], period: int) -> tuple[Path, ...]:
    # Scanning every installed package's metadata costs ~15 ms, and one grade asks several
    # times (the spec, each kernel's sandbox): once per lookup function and period.
    folders: list[Path] = []
    for ep in sorted(lookup(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
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
    return tuple(folders)


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
