"""Which notebook of a repository a CI job grades.

A student's repository often holds more than the submission: the starter, a scratch copy, an
old attempt. The one graded is the one named (a path with no glob characters), else among the
notebooks the pattern matches the one whose metadata names the assignment
(`metadata.grader.assignment`), else the only notebook there is. When several could be meant,
nothing is guessed: `choose_notebook` raises one sentence that lists them.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
from pathlib import Path

from grader.errors import SubmissionError
from grader.files import NotRegularFile, read_regular
from grader.submission.notebook import declared_in

DEFAULT_PATTERN = "*.ipynb"
# folders whose notebooks are never the submission (hidden folders are skipped as the shell does)
IGNORED = frozenset({"__MACOSX", ".ipynb_checkpoints", "__pycache__", "node_modules"})
MAX_LISTED = 8  # names shown in a message; the rest are counted
_METADATA_BYTES = 50 * 1024 * 1024  # a notebook larger than this names no assignment here


class AmbiguousNotebook(SubmissionError):
    """Several notebooks could be the submission (or none matches): the message lists them."""


def is_pattern(text: str) -> bool:
    """Whether `text` is a glob (with `*`, `?` or `[`) rather than one notebook's path."""
    return glob.has_magic(text)


def candidates(root: Path, pattern: str = DEFAULT_PATTERN) -> list[str]:
    """The files under `root` the pattern matches, as bash's globstar matches them (relative
    paths, sorted): regular files only, never through a link, none in a hidden folder, a
    checkpoint folder or a package cache."""
    parts = [p for p in Path(pattern).as_posix().split("/") if p not in ("", ".")]
    depth = None if "**" in parts else len(parts)
    out = []
    for folder, dirs, files in os.walk(root):  # (links to folders are not followed)
        rel = Path(folder).relative_to(root).parts
        if depth is not None and len(rel) >= depth:
            dirs.clear()
        dirs[:] = sorted(d for d in dirs if d not in IGNORED and not d.startswith("."))
        for name in files:
            path = Path(folder) / name
            if _matches(parts, [*rel, name]) and path.is_file() and not path.is_symlink():
                out.append(Path(*rel, name).as_posix())
    return sorted(out)


def _matches(pattern: list[str], path: list[str]) -> bool:
    """Whether path components match pattern components (`**` any number of folders; a name
    starting with a dot only where the pattern's component does)."""
    if not pattern:
        return not path
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return _matches(rest, path) or (bool(path) and not path[0].startswith(".") and _matches(pattern, path[1:]))
    if not path or (path[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(path[0], head) and _matches(rest, path[1:])


def declared_assignment(path: Path) -> str | None:
    """`metadata.grader.assignment` of the notebook at `path`; None when it names none or is unreadable."""
    try:
        raw = json.loads(read_regular(path, _METADATA_BYTES))
    except (NotRegularFile, OSError, ValueError, RecursionError):
        return None
    return declared_in(raw)


def assignment_id(assignment: str) -> str:
    """The id an assignment option means: an id as is, a folder (or its assignment.toml) by its name."""
    text = assignment.rstrip("/" + os.sep)
    p = Path(text)
    if p.name == "assignment.toml":
        p = p.parent
    return p.name if ("/" in text or os.sep in text or text.startswith((".", "~"))) else text


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else "")


def choose_notebook(root: str | Path = ".", pattern: str = DEFAULT_PATTERN, assignment: str | None = None) -> str:
    """The notebook to grade, as a path relative to `root`.

    `pattern` with no glob characters names the notebook: it is chosen as is, even if it does
    not exist (grading then says so). Otherwise, among the notebooks it matches: the one whose
    metadata names `assignment` (an id or folder), or with no assignment the one that names
    any; failing that, the only notebook matched. AmbiguousNotebook when there are none, or
    several to choose from.
    """
    pattern = pattern or DEFAULT_PATTERN
    if not is_pattern(pattern):
        return pattern
    root = Path(root)
    found = candidates(root, pattern)
    if not found:
        raise AmbiguousNotebook(f"no notebook matches {pattern!r}; commit the notebook, or name the one to grade")
    wanted = assignment_id(assignment) if assignment else None
    declared = {rel: declared_assignment(root / rel) for rel in found}
    naming = [rel for rel in found if declared[rel] is not None and (wanted is None or declared[rel] == wanted)]
    if len(naming) == 1:
        return naming[0]
    what = f"assignment {wanted!r}" if wanted else "an assignment"
    if len(naming) > 1:
        raise AmbiguousNotebook(f"{len(naming)} notebooks name {what} in their metadata: {_listed(naming)}; "
                                "name the one to grade")
    if len(found) == 1:
        return found[0]
    raise AmbiguousNotebook(f"{len(found)} notebooks match {pattern!r} and none names {what} in its metadata: "
                            f"{_listed(found)}; name the one to grade")
