"""The packages an assignment's kernel environment holds: the default set, what a spec
declares on top, and their canonical names (building them is the kernels stage's work)."""

from __future__ import annotations

from collections.abc import Iterable

from grader.errors import GraderError

DEFAULT_PACKAGES = ("numpy", "scipy", "matplotlib", "pandas", "scikit-learn", "ipykernel")
# Always in an environment, whatever the assignment says: the kernel and the probe runner need them.
REQUIRED_PACKAGES = ("numpy", "ipykernel")


class EnvBuildError(GraderError):
    """A kernel environment could not be built (unknown package, no network, ...)."""


def _parse(req: str) -> tuple[str, str]:
    """(canonical name, normalised requirement string) of a pip requirement; EnvBuildError if invalid."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        r = Requirement(req)
    except InvalidRequirement as e:
        raise EnvBuildError(f"invalid package requirement {req!r}: {str(e).splitlines()[0]}") from None
    r.name = canonicalize_name(r.name)  # `NumPy` and `numpy` are one environment
    return r.name, str(r)


def requirement_names(packages: Iterable[str]) -> list[str]:
    """The canonical distribution names of requirement strings, in order."""
    return [_parse(p)[0] for p in packages]


def resolve_requirements(packages: Iterable[str] = (), include_default: bool = True) -> tuple[str, ...]:
    """The full, sorted requirement list: the default set (or only what the kernel needs) with
    `packages` added; a declared package replaces the default entry of the same name."""
    base = DEFAULT_PACKAGES if include_default else REQUIRED_PACKAGES
    by_name: dict[str, list[str]] = {}
    for req in base:
        name, norm = _parse(req)
        by_name[name] = [norm]
    declared: dict[str, list[str]] = {}
    for req in packages:
        name, norm = _parse(req)
        declared.setdefault(name, []).append(norm)
    by_name.update(declared)
    return tuple(sorted(r for reqs in by_name.values() for r in reqs))
