"""The package's layout: one subpackage per stage of the flow, imports only down the flow.

Read from the source with `ast` (every import, including those inside functions), so a new
circle or an import from an earlier stage into a later one fails here, not in review.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "grader"

# Modules every stage may use; they import no stage themselves.
BASE = ("errors", "options", "cachefiles", "report", "inert", "lazy", "files")
# The stages in flow order: a stage imports only base modules, itself and stages before it.
STAGES = (
    "assignment",  # the assignment as data: spec, inputs, the torch reference
    "submission",  # reading the notebook
    "plan",  # what to ask the notebook, on which inputs, expecting what
    "kernels",  # environments, isolation, starting and ending kernels
    "run",  # executing cells, the in-kernel runner, probes
    "judging",  # finding answers, comparing, diagnosing, the re-run, scoring
    "pool",  # hidden cases computed ahead
    "grading",  # one notebook, end to end
    "render",  # the report in each output format
    "selfcheck",  # check() inside a student's notebook
    "authoring",  # drafting, validating and bundling assignments
    "course",  # the course: roster, deadlines, overrides, LMS exports, similarity
    "batch",  # a class at once, the gradebook
    "service",  # the grading service: uploads, the queue, pages and API
    "cli",  # the commands, thin on top
)
MAX_LINES = 550
MAX_CODE_STRING_LINES = 30


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in its code)."""
    files = {module_name(p, root): p for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (a package re-exporting its own
    children is not a circle between parts)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            group.sort()
            if len(group) > 1 and not all(x == group[0] or x.startswith(group[0] + ".") for x in group):
                found.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def rank(mod: str, pkg: str) -> int | None:
    """Where a module stands in the flow: -1 for base modules, the stage's index, or None."""
    parts = mod.split(".")
    if len(parts) < 2:
        return None  # the package's own __init__: the public API, above everything
    if len(parts) == 2 and parts[1] in BASE:
        return -1
    return STAGES.index(parts[1]) if parts[1] in STAGES else None


def upward_imports(graph: dict[str, set[str]], pkg: str) -> list[str]:
    """Imports from a module into a later stage than its own (or from a base module into any stage)."""
    bad = []
    for mod, targets in sorted(graph.items()):
        r = rank(mod, pkg)
        if r is None:
            continue
        for t in sorted(targets):
            rt = rank(t, pkg)
            if t == pkg or rt is None or rt > r:
                bad.append(f"{mod} -> {t}")
    return bad


def unplaced(root: Path) -> list[str]:
    """Modules that are neither a base module nor inside a stage."""
    mods = (module_name(p, root) for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return sorted(m for m in mods if m != root.name and rank(m, root.name) is None)


def code_strings(root: Path) -> list[str]:
    """String constants of many lines that hold Python code (programs belong in modules)."""
    found = []
    for p in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                s = node.value
                if s.count("\n") >= MAX_CODE_STRING_LINES and any(k in s for k in ("\ndef ", "\nimport ", "\n    def ")):
                    found.append(f"{p.relative_to(root.parent)}:{node.lineno}")
    return found


def test_the_package_has_no_import_circle():
    assert circles(import_graph(PACKAGE)) == []


def test_every_import_goes_down_the_flow():
    assert upward_imports(import_graph(PACKAGE), PACKAGE.name) == []


def test_every_module_is_a_base_module_or_part_of_a_stage():
    assert unplaced(PACKAGE) == []
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()} == set(STAGES)


def test_no_file_is_too_long_to_read():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_no_program_is_held_in_a_string():
    assert code_strings(PACKAGE) == []


def test_each_stage_says_what_it_is():
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 8, stage


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "grader"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    return _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "",
        "assignment/__init__.py": "",
        "assignment/spec.py": "from grader.assignment import reference\n",
        "assignment/reference.py": "def f():\n    from .spec import X\n",
        "judging/__init__.py": "",
        "judging/judge.py": "from grader.assignment.spec import X\n",
        "kernels/__init__.py": "",
        "kernels/launch.py": "def g():\n    from grader.judging import judge\n",
        "errors2/__init__.py": "",
    })


def test_the_checks_see_a_circle_even_through_a_lazy_import(broken: Path):
    assert circles(import_graph(broken)) == [["grader.assignment.reference", "grader.assignment.spec"]]


def test_the_checks_see_an_import_up_the_flow(broken: Path):
    assert upward_imports(import_graph(broken), "grader") == ["grader.kernels.launch -> grader.judging.judge"]


def test_the_checks_see_a_module_outside_every_stage(broken: Path):
    assert unplaced(broken) == ["grader.errors2"]


def test_a_package_reexporting_its_parts_is_no_circle(tmp_path: Path):
    root = _package(tmp_path, {
        "__init__.py": "",
        "run/__init__.py": "from grader.run.execute import run\n",
        "run/execute.py": "from grader.run import budget\n",
        "run/budget.py": "",
    })
    assert circles(import_graph(root)) == []


def test_the_layout_page_names_every_module_under_its_stage():
    """docs/layout.md shows the tree: every module of every stage, under that stage."""
    page = (PACKAGE.parent / "docs" / "layout.md").read_text(encoding="utf-8")
    tree = page[page.index("```"):page.index("```", page.index("```") + 3)]
    sections = {}
    current = ""
    for line in tree.splitlines():
        head = line.strip().split(" ")[0]
        if line.startswith("  ") and not line.startswith("    ") and head.endswith("/"):
            current = head.rstrip("/")
        elif line.startswith("    ") and current:
            sections.setdefault(current, "")
            sections[current] += line
    missing = [f"{stage}/{p.name}" for stage in STAGES for p in sorted((PACKAGE / stage).glob("*.py"))
               if p.name != "__init__.py" and p.name not in sections.get(stage, "")]
    assert missing == []
    base = [f"{m}.py" for m in BASE if f"{m}.py" not in tree]
    assert base == []


def test_every_stage_is_a_package_the_wheel_installs():
    """pyproject.toml lists the packages explicitly: a new stage left out would be missing from
    every installed grader (a Dask worker's, a Gradescope bundle's)."""
    import tomllib

    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert [s for s in STAGES if f"grader.{s}" not in listed] == []
