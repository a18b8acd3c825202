"""What a failed kernel-environment build says: one whole line naming whose environment, the
requirement the installer blames, and why; never the installer's pages of output, never a
line cut mid-word."""

from __future__ import annotations

import re

from grader.assignment.requirements import requirement_names
from grader.errors import GraderError

MAX_WHY = 300  # characters of the installer's own words (the whole line stays under 500)
_BOX = re.compile(r"[\u2500-\u257f\u00d7]+")  # uv's box drawing and its "x" bullet
# uv: "hint: Wheels are required for `numpy` because building from source is disabled ..."
_WHEELS_REQUIRED = re.compile(r"Wheels are required for `([^`]+)`")
# pip --only-binary: "No matching distribution found for numpy<1.20"
_PIP_NO_MATCH = re.compile(r"No matching distribution found for ([^\s;]+)")
SOURCE_BUILDS_HINT = ("allow building from source with 'grade env build --allow-source-builds' or "
                      "NNGRADER_ALLOW_SOURCE_BUILDS=1 (slow), or choose a version with wheels")


def _owner(what: str) -> str:
    return f"cannot build the kernel environment{f' for {what}' if what else ''}"


def failure(what: str, requirements: tuple[str, ...], output: str, python_version: str = "",
            binary_only: bool = False) -> str:
    """One line: whose environment, which requirement(s) the installer's message names, and why."""
    if binary_only:
        wheel = _no_wheel(requirements, output, python_version)
        if wheel:
            return f"{_owner(what)}: {wheel}"
    lines = _clean(output)
    text = " ".join(lines)
    named = [r for r in requirements if mentions(text, requirement_names([r])[0])]
    # The requirement a resolver blames is the one it says was "not found" or has "no version".
    blamed = [r for r in named if re.search(rf"\b{re.escape(requirement_names([r])[0])}\b[^.;]*"
                                           r"(not found|no (matching )?version|no solution|does not exist)",
                                           text, re.IGNORECASE)]
    culprits = blamed or named
    which = (f"requirement {', '.join(repr(r) for r in culprits)}" if culprits
             else f"requirements {', '.join(requirements)}")
    why = clip(re.sub(r"\s+", " ", text), MAX_WHY) or "the installer failed without a message"
    return clip(f"{_owner(what)}: {which} could not be installed: {why}", 480)


def timed_out(what: str, limit: float, step: str) -> str:
    """One line for a build stopped at its time limit."""
    doing = f" while {step}" if step else ""
    return (f"{_owner(what)}: stopped at its time limit of {limit:g} s{doing}; nothing was kept "
            "(for a longer limit set NNGRADER_ENV_BUILD_TIMEOUT=SECONDS or use 'grade env build --time-limit SECONDS')")


def _clean(output: str) -> list[str]:
    """The installer's message lines: no box drawing, no hints, and not the log of a source
    build (uv prints it after "[stdout]" or "[stderr]": compiler output, cut anywhere)."""
    lines = []
    for ln in output.splitlines():
        ln = _BOX.sub(" ", ln).strip()
        if ln in ("[stdout]", "[stderr]"):
            break
        if ln and not ln.lower().startswith(("hint:", "help:")):
            lines.append(ln)
    return lines


def _no_wheel(requirements: tuple[str, ...], output: str, python_version: str) -> str:
    """For a binary-only install the installer refused: "X has no binary wheel for Python 3.11
    on this platform; ..." naming the requirement as declared; "" if that was not the cause."""
    names = list(dict.fromkeys(_WHEELS_REQUIRED.findall(output)))
    pip = not names
    if pip:  # pip says only that no distribution matched: the wheels were all it looked at
        names = list(dict.fromkeys(requirement_names([m])[0] for m in _pip_matches(output)))
    if not names:
        return ""
    by_name = dict(zip(requirement_names(requirements), requirements, strict=True))
    shown = []
    for name in names:
        canonical = requirement_names([name])[0] if _valid(name) else name
        if canonical in by_name:
            shown.append(by_name[canonical])
        else:  # a dependency: say which requirement pulls it in, when the installer says
            m = re.search(rf"([\w.-]+(?:[=<>!~]=?[\w.*]+)?) depends on {re.escape(name)}\b", output)
            shown.append(f"{name} (needed by {m.group(1)})" if m else f"{name} (a dependency)")
    version = ".".join(python_version.split(".")[:2]) or "this Python"
    has = "has" if len(shown) == 1 else "have"
    # pip lists the versions it found wheels for: none at all may also be a name that does not exist
    nothing = "" if not pip else (", or no such package exists" if "(from versions: none)" in output
                                  else ", or no such version exists")
    return clip(f"{' and '.join(shown)} {has} no binary wheel for Python {version} on this platform"
                f"{nothing}", 200) + f"; {SOURCE_BUILDS_HINT}"


def _pip_matches(output: str) -> list[str]:
    return [m for m in _PIP_NO_MATCH.findall(output) if _valid(m)]


def _valid(requirement: str) -> bool:
    try:
        requirement_names([requirement])
    except GraderError:
        return False
    return True


def mentions(text: str, name: str) -> bool:
    """Whether `text` names the package `name` (any spelling of its separators)."""
    pattern = re.escape(name).replace(r"\-", "[-_.]")
    return re.search(rf"(?<![\w.-]){pattern}(?![\w-])", text, re.IGNORECASE) is not None


def clip(text: str, limit: int) -> str:
    """`text` whole if it fits, else cut after its last whole word that fits, marked "…"."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + "…"
