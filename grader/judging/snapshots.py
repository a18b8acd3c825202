"""Variables a later cell overwrites with something that is not an answer at all.

Students reuse names (`y` for the network's output, then `y = sigmoid(xs)` for a plot). A
variable is judged on its final value; only where that is not an answer at all (None, a
string, a plot, an array of another size) does the value it had right after the last earlier
cell that left an answer in it count instead, and the check says which cell's value was
graded. Four candidate formulas in four cells are judged on the fourth.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from grader.assignment.tables import Check
from grader.judging.consistency import ask
from grader.judging.judge import is_answer, judge
from grader.judging.rerun_sample import assigning_cells
from grader.plan.checks import CheckPlan
from grader.plan.items import ProbeItem
from grader.report import CheckResult
from grader.run.probe import Answer, Value
from grader.run.session import Session

SNAPSHOT_TIMEOUT = 5.0  # seconds to read a cell's variables
# Bounds on what is kept: whether an earlier value is an answer depends on its structure (kind,
# shapes, keys), so of values of one structure only the latest can ever be graded; a notebook
# that reassigns a large variable in every cell keeps one copy of it, not one per cell.
MAX_KEPT_PER_CHECK = 8  # distinct structures, most recent first
MAX_KEPT_BYTES = 64 * 2**20  # of array data, all checks together; the oldest go first


class Snapshots:
    """Which cells to watch, and what the watched variables held after them."""

    def __init__(self, nb: object, checks: list[Check]):
        # 0-based cell -> [(check id, names)], for variables assigned in more than one cell
        self.watch: dict[int, list[tuple[str, list[str]]]] = {}
        self.last: dict[str, int] = {}  # check id -> 1-based cell of its final assignment
        self.values: dict[str, list[tuple[int, Answer]]] = {}  # check id -> [(1-based cell, answer)]
        for check in checks:
            if check.kind != "variable":
                continue
            names = [check.target, *check.aliases]
            cells = next((c for n in names if (c := assigning_cells(nb, n))), [])  # type: ignore[arg-type]
            if len(cells) < 2:
                continue
            self.last[check.id] = cells[-1]
            for cell in cells[:-1]:
                self.watch.setdefault(cell - 1, []).append((check.id, names))

    def hook(self, modname: str) -> Callable[[Session, int], Awaitable[None]] | None:
        """The after-cell hook for execute(), or None when nothing needs watching."""
        if not self.watch:
            return None

        async def after_cell(session: Session, index: int) -> None:
            wanted = self.watch.get(index)
            if not wanted:
                return
            items = [ProbeItem(f"{cid}@{index}", "variable", names) for cid, names in wanted]
            answers = await ask(session, modname, items, SNAPSHOT_TIMEOUT) or {}
            for cid, _ in wanted:
                ans = answers.get(f"{cid}@{index}")
                if ans is not None and ans.found is not None:
                    self._keep(cid, index + 1, ans)

        return after_cell

    def _keep(self, cid: str, cell: int, ans: Answer) -> None:
        """Keep a cell's value, replacing any earlier one of the same structure (a re-run of the
        cell replaces its own), within the bounds above."""
        shape = structure(ans.value)
        kept = [(c, a) for c, a in self.values.get(cid, []) if c != cell and structure(a.value) != shape]
        self.values[cid] = kept[-(MAX_KEPT_PER_CHECK - 1):] + [(cell, ans)]
        while sum(_array_bytes(a.value) for vs in self.values.values() for _, a in vs) > MAX_KEPT_BYTES:
            cell_o, cid_o = min((c, k) for k, vs in self.values.items() for c, _ in vs)  # the oldest
            self.values[cid_o] = [v for v in self.values[cid_o] if v[0] != cell_o]

    def rescue(self, plans: list[CheckPlan], results: list[CheckResult], finals: dict[str, Answer]) -> None:
        """Where a variable's final value (`finals`: check id -> answer) is no answer at all, judge
        the last earlier value that is one; keep it if it passes, saying which cell."""
        at = {r.id: i for i, r in enumerate(results)}
        for p in plans:
            cid = p.check.id
            ids = [t.id for t in p.targets]
            if cid not in self.values or not p.trials or any(i not in at for i in ids):
                continue
            if all(results[at[i]].status == "pass" for i in ids) or results[at[ids[0]]].status == "error":
                continue  # right, or not checked (e.g. out of time): nothing to replace
            final = finals.get(cid)
            if final is None or (final.found is not None and self._answers(p, final)):
                continue  # no final value read, or it is an answer: the handed-in value alone is graded
            earlier = [(cell, ans) for cell, ans in sorted(self.values[cid], key=lambda v: v[0])
                       if self._answers(p, ans)]
            if not earlier:
                continue
            cell, ans = earlier[-1]
            trial = p.trials[0]
            again = judge(p, {f"{cid}#{trial.index}": Answer(f"{cid}#{trial.index}", ans.found, ans.value)}, "ok")
            if all(r.status == "pass" for r in again):
                for r in again:
                    r.message += (f" (its value after cell {cell}; the notebook assigns {ans.found} "
                                  f"again in cell {self.last[cid]})")
                    r.detail["graded_after_cell"] = cell
                    results[at[r.id]] = r

    @staticmethod
    def _answers(p: CheckPlan, ans: Answer) -> bool:
        """Whether a value is an answer to any of the check's targets."""
        trial = p.trials[0]
        return any(is_answer(ans.value, t, trial.expected[t.id]) for t in p.targets)


def structure(value: Value, depth: int = 0) -> tuple[object, ...]:
    """What decides whether a value can be an answer: its kind, shapes and keys (bounded)."""
    if value.kind == "array" and value.array is not None:
        return ("array", value.array.shape)
    if value.kind in ("seq", "dict") and depth < 3:
        items = tuple(structure(v, depth + 1) for v in value.items[:16])
        return (value.kind, value.is_tuple, tuple(value.keys[:16]), len(value.items), items)
    return (value.kind,)


def _array_bytes(value: Value) -> int:
    if value.array is not None:
        return int(value.array.nbytes)
    return sum(_array_bytes(v) for v in value.items)
