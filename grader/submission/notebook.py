"""Reading a submission: bytes to a validated nbformat-4 notebook, or one clear sentence why not.

In two steps: `open_notebook` reads the file and its JSON (enough to know the assignment its
metadata names), `OpenedNotebook.submission` has nbformat upgrade and validate it. Grading
starts the first kernel between the two, so nbformat (and its schema validator) loads while
that kernel boots.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grader.errors import SubmissionError
from grader.files import NotRegularFile, read_regular

if TYPE_CHECKING:
    from nbformat import NotebookNode

MAX_NOTEBOOK_BYTES = 200 * 1024 * 1024
# The longest cell the grader's own analyses read (its syntax tree costs ~100x its text in
# memory). Longer cells still run in the kernel, within its limits; the grader just does not
# look inside them (no hand-written cell comes near: this is 4,000 lines of 50 characters).
MAX_ANALYSED_CELL_CHARS = 200_000
KNOWN_CELL_TYPES = {"code", "markdown", "raw"}


def parse_cell(source: str) -> ast.Module | None:
    """A code cell's syntax tree (IPython magics and shell lines blanked), or None if it does not parse.

    Also None for code nested too deeply for the parser (`1+1+...` over thousands of terms):
    the kernel rejects such a cell too, and no scan of the grader may crash on it; and None for a
    cell too long to analyse (the grader's own time and memory stay bounded whatever a cell holds).
    """
    if not analysable(source):
        return None
    code = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def analysable(source: str) -> bool:
    """Whether a cell is short enough for the grader to analyse its code."""
    return len(source) <= MAX_ANALYSED_CELL_CHARS


@dataclass
class Submission:
    """A notebook ready to run: its cells (outputs dropped), where it came from, and its hash."""

    path: Path
    nb: NotebookNode
    sha256: str

    @property
    def declared_assignment(self) -> str | None:
        """`metadata.grader.assignment`, which starter notebooks carry."""
        return declared_in(self.nb)


@dataclass
class OpenedNotebook:
    """A notebook file read, its JSON parsed and shaped like a notebook (outputs dropped), not yet
    validated: enough to know the assignment it names."""

    path: Path
    raw: dict[str, Any]
    sha256: str

    @property
    def declared_assignment(self) -> str | None:
        """`metadata.grader.assignment`, which starter notebooks carry."""
        return declared_in(self.raw)

    def submission(self) -> Submission:
        """The notebook upgraded to nbformat 4 and validated; SubmissionError in one sentence if it cannot be."""
        return Submission(self.path, to_notebook(self.raw, str(self.path)), self.sha256)


def declared_in(notebook: Any) -> str | None:
    """`metadata.grader.assignment` of a notebook's JSON (a dict, or a NotebookNode), if it names one."""
    meta = notebook.get("metadata") if isinstance(notebook, dict) else None
    grader = meta.get("grader") if isinstance(meta, dict) else None
    value = grader.get("assignment") if isinstance(grader, dict) else None
    return value if isinstance(value, str) and value else None


def read_submission(path: str | Path) -> Submission:
    """Read and validate a notebook file; nbformat 3 is upgraded, kernelspecs are ignored."""
    return open_notebook(path).submission()


def open_notebook(path: str | Path) -> OpenedNotebook:
    """Read a notebook file and parse its JSON (the first step of `read_submission`)."""
    p = Path(path)
    data = read_notebook_bytes(p)
    return OpenedNotebook(p, load_json(data, str(p)), hashlib.sha256(data).hexdigest())


def read_notebook_bytes(path: Path, name: str | None = None) -> bytes:
    """A notebook file's bytes, opened as a regular file only (never through a symbolic link,
    never a device, pipe or socket) and read up to the size limit, so nothing a submission names
    is read; SubmissionError in one sentence (about `name`, else the path) otherwise."""
    name = name or str(path)
    if not os.path.lexists(path):
        raise SubmissionError(f"{name}: no such file")
    if path.is_dir() and not path.is_symlink():
        raise SubmissionError(f"{name}: is a directory, not a notebook file")
    try:
        return read_regular(path, MAX_NOTEBOOK_BYTES)
    except NotRegularFile as e:
        raise SubmissionError(f"{name}: {_notebook_words(e.strerror)}") from None
    except OSError as e:
        raise SubmissionError(f"{name}: cannot be read ({e.strerror or e})") from None


def _notebook_words(why: str) -> str:
    if why.startswith("is ") and "over the" in why:
        return "the notebook " + why
    return why + " (submissions are read only as regular files)"


def parse_notebook(data: bytes, name: str = "notebook") -> NotebookNode:
    """Bytes to a v4 notebook with outputs dropped; SubmissionError if it is not one."""
    return to_notebook(load_json(data, name), name)


def load_json(data: bytes, name: str = "notebook") -> dict[str, Any]:
    """A notebook file's JSON, shaped like a notebook, its outputs dropped and the fields
    nbformat requires but grading never reads filled in; SubmissionError if it is not one."""
    if not data.strip():
        raise SubmissionError(f"{name}: the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SubmissionError(f"{name}: not valid UTF-8 text (byte {e.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{name}: not a notebook: not valid JSON (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise SubmissionError(f"{name}: not a notebook: JSON nested too deeply") from None
    except (ValueError, MemoryError) as e:  # e.g. an integer of thousands of digits
        raise SubmissionError(f"{name}: not a notebook: {_short(e)}") from None
    _check_shape(raw, name)
    # Outputs are never graded: drop them before nbformat parses and validates (a 100 MB
    # notebook is almost all outputs), so only the cells' sources are parsed again.
    _drop_outputs(raw)
    _fill_defaults(raw)
    return raw


def to_notebook(raw: dict[str, Any], name: str = "notebook") -> NotebookNode:
    """A notebook's JSON (from `load_json`) as a validated v4 notebook; SubmissionError if it is not one."""
    import nbformat  # (here: reading a notebook's JSON, and knowing its assignment, do not need it)
    from nbformat.validator import ValidationError as NbValidationError

    text = json.dumps(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4, capture_validation_error={})  # not logged
    except Exception as e:  # nbformat raises many kinds on odd input
        raise SubmissionError(f"{name}: not a readable notebook ({_short(e)})") from None
    _check_cells(nb, name)
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(nb)
    except NbValidationError:
        # Old or sloppy writers leave fields nbformat now requires; repair what is repairable.
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                nb = nbformat.from_dict(nbformat.validator.normalize(dict(nb))[1])
                nbformat.validate(nb)
        except Exception as e:
            raise SubmissionError(f"{name}: not a valid notebook ({_short(e)})") from None
    except Exception as e:
        raise SubmissionError(f"{name}: not a valid notebook ({_short(e)})") from None
    return nb


def _check_shape(raw: Any, name: str) -> None:
    if not isinstance(raw, dict):
        raise SubmissionError(f"{name}: JSON, but not a notebook (the top level is not an object)")
    fmt = raw.get("nbformat")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise SubmissionError(f"{name}: JSON, but not a notebook (no 'nbformat' version)")
    if fmt not in (3, 4):
        raise SubmissionError(f"{name}: notebook format {fmt} is not supported (3 and 4 are)")
    if fmt == 4 and not isinstance(raw.get("cells"), list):
        raise SubmissionError(f"{name}: JSON, but not a notebook (no list of 'cells')")
    if fmt == 3 and not isinstance(raw.get("worksheets"), list):
        raise SubmissionError(f"{name}: JSON, but not a notebook (no 'worksheets')")


def _drop_outputs(raw: dict[str, Any]) -> None:
    cells = list(raw.get("cells") or [])
    for ws in raw.get("worksheets") or []:  # nbformat 3
        if isinstance(ws, dict) and isinstance(ws.get("cells"), list):
            cells += ws["cells"]
    for cell in cells:
        if isinstance(cell, dict) and "outputs" in cell:
            cell["outputs"] = []


def _fill_defaults(raw: dict[str, Any]) -> None:
    """Fields sloppy writers leave out that nbformat requires but grading never reads."""
    if raw.get("nbformat") != 4:
        return
    if not isinstance(raw.get("metadata"), dict):
        raw["metadata"] = {}
    if not isinstance(raw.get("nbformat_minor"), int):
        raw["nbformat_minor"] = 4
    for cell in raw["cells"]:
        if not isinstance(cell, dict):
            continue
        if not isinstance(cell.get("metadata"), dict):
            cell["metadata"] = {}
        if cell.get("cell_type") == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)


def _check_cells(nb: NotebookNode, name: str) -> None:
    for i, cell in enumerate(nb.get("cells", []), start=1):
        if not isinstance(cell, dict):
            raise SubmissionError(f"{name}: cell {i} is not an object")
        kind = cell.get("cell_type")
        if not isinstance(kind, str) or kind not in KNOWN_CELL_TYPES:
            raise SubmissionError(f"{name}: cell {i} has unknown type {str(kind)[:40]!r}")
        src = cell.get("source", "")
        if isinstance(src, list):
            src = "".join(s for s in src if isinstance(s, str))
        if not isinstance(src, str):
            raise SubmissionError(f"{name}: cell {i} has no source text")
        cell["source"] = src


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:200]
