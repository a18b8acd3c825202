"""The pool of precomputed runs: replayed values equal live ones, and grading with it needs no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from grader.assignment.load import find_assignment, load_spec
from grader.assignment.reference import Reference
from grader.judging.rerun_judge import prepare_rerun, rerun_samples
from grader.plan.checks import plan
from grader.pool import store as pool
from tests.conftest import ASSIGNMENTS, NOTEBOOKS, ROOT

FIXTURES = ROOT / "tests" / "fixtures"
# every shipped assignment, and a fixture whose hidden inputs come from a generator
ALL = [*sorted(p.name for p in ASSIGNMENTS.iterdir() if (p / "assignment.toml").is_file()),
       str(FIXTURES / "logistic-external")]
# replayed too: inputs that are a structure of dicts (a network as layers of neurons), globals
REPLAYED = [*ALL, *(str(FIXTURES / name) for name in ("xor-backprop", "globals-backprop", "cs231n-package",
                                                     "variables-backprop"))]
WRONG = {  # a typical wrong submission of each
    "sigmoid-2-3-1": NOTEBOOKS / "sigmoid-2-3-1" / "seed_style.ipynb",
    "sigmoid-2-2-2": NOTEBOOKS / "sigmoid-2-2-2" / "seed_sign_dropped.ipynb",
    "exp-output-2-2-1": NOTEBOOKS / "exp-output-2-2-1" / "loss_without_half.ipynb",
    "relu-sigmoid-3-3-1": NOTEBOOKS / "relu-sigmoid-3-3-1" / "relu_derivative_is_relu.ipynb",
    "tanh-softmax-gaussians": NOTEBOOKS / "tanh-softmax-gaussians" / "naive_softmax.ipynb",
    str(FIXTURES / "logistic-external"): FIXTURES / "logistic-external" / "untrained.ipynb",
}
# Runs the CLI, then says on stderr whether torch was ever imported (its atexit handler runs
# before the CLI's own fast exit, which calls os._exit only after the report is out).
_PROBE = """
import json, os, sys
from grader import cli
real_exit = os._exit
def _exit(code):
    print("TORCH " + json.dumps("torch" in sys.modules), file=sys.stderr, flush=True)
    real_exit(code)
os._exit = _exit
try:
    cli.main(args=sys.argv[1:])
finally:
    print("TORCH " + json.dumps("torch" in sys.modules), file=sys.stderr, flush=True)
"""


def _cli(*args: str, cache, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NNGRADER_CACHE_DIR": str(cache), **(extra_env or {})}
    return subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=900)


def _torch(r: subprocess.CompletedProcess) -> bool:
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("TORCH "))
    return json.loads(line[len("TORCH "):])


def _same(a, b) -> bool:
    """Equal values, types and bits (nan equal to nan)."""
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
                and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


TRIAL_FIELDS = ("index", "inputs", "args", "then_args", "labels", "expected", "reference_result", "variants",
                "ignoring", "intermediates", "optional", "init_args", "state", "ref_args", "globals")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRADER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------ replay, without kernels


@pytest.mark.parametrize("name", REPLAYED)
def test_replayed_plans_equal_live_plans_bit_for_bit(name, cache):
    asg = find_assignment(name)
    live = Reference(asg)
    assert pool.fill(asg, live, size=1) == 1
    (seed,) = pool.entry_seeds(pool.pool_folder(asg))
    entry = pool.read_entry(asg, seed)
    assert entry is not None
    pooled = pool.PooledReference(asg, entry, lambda: pytest.fail("the entry lacked a value"))
    replayed, computed = plan(asg, pooled, seed), plan(asg, live, seed)
    prepare_rerun(asg, pooled, replayed, seed)  # every value a re-run may need is there too
    assert pooled.live_calls == 0
    for a, b in zip(replayed, computed, strict=True):
        for ta, tb in zip([*a.trials, a.given, a.extreme], [*b.trials, b.given, b.extreme], strict=True):
            assert (ta is None) == (tb is None)
            for f in TRIAL_FIELDS if ta is not None else ():
                assert _same(getattr(ta, f), getattr(tb, f)), (a.check.id, ta.index, f)
    if asg.spec.rerun is not None:
        assert _same(rerun_samples(asg, pooled, seed), rerun_samples(asg, live, seed))


def test_a_call_the_entry_lacks_goes_to_the_live_reference(cache):
    asg = find_assignment("sigmoid-2-3-1")
    live = Reference(asg)
    pool.fill(asg, live, size=1)
    (seed,) = pool.entry_seeds(pool.pool_folder(asg))
    pooled = pool.PooledReference(asg, pool.read_entry(asg, seed), lambda: live)
    z = np.array([[0.25, -3.5]])  # not an input of this seed's run: a student's value, say
    assert _same(pooled.call("sigmoid", [z]), live.call("sigmoid", [z]))
    assert pooled.live_calls == 1


def test_a_pool_has_hundreds_of_random_seeds_and_a_run_draws_one(cache, monkeypatch):
    assert pool.POOL_SIZE >= 256
    asg = find_assignment("sigmoid-2-3-1")
    live = Reference(asg)
    monkeypatch.setenv(pool.POOL_SIZE_VARIABLE, "4")
    seed, incomplete = pool.choose_seed(asg)
    assert incomplete  # no pool yet: a fresh seed, computed live
    assert pool.fill(asg, live) == 4
    seeds = set(pool.entry_seeds(pool.pool_folder(asg)))
    drawn = {pool.choose_seed(asg) for _ in range(200)}
    assert {s for s, _ in drawn} == seeds  # every entry can be drawn, nothing else is
    assert not any(incomplete for _, incomplete in drawn)
    folder = pool.pool_folder(asg)  # hidden inputs and answers: the grader's user only
    assert folder.stat().st_mode & 0o777 == 0o700 and folder.parent.stat().st_mode & 0o777 == 0o700
    assert all((folder / f"{s}.entry").stat().st_mode & 0o777 == 0o600 for s in seeds)
    # seeds come from the system's randomness: another cache's pool has others
    monkeypatch.setenv("NNGRADER_CACHE_DIR", str(cache.parent / "other"))
    pool.fill(asg, live)
    assert not seeds & set(pool.entry_seeds(pool.pool_folder(asg)))


def _one_entry(asg):
    pool.fill(asg, Reference(asg), size=1)
    folder = pool.pool_folder(asg)
    (seed,) = pool.entry_seeds(folder)
    return folder / f"{seed}.entry", seed


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other key", "object array", "pickle"])
def test_a_damaged_entry_is_ignored_and_removed(cache, damage):
    asg = find_assignment("sigmoid-2-3-1")
    path, seed = _one_entry(asg)
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) - 100])
    elif damage == "garbage":
        path.write_bytes(b"\0" * len(raw))
    elif damage == "pickle":
        import pickle
        path.write_bytes(pickle.dumps({"key": "x"}))
    else:
        entry = pool.Entry.from_bytes(raw)
        if damage == "other key":
            entry.key = "0" * 64
        else:  # an array of Python objects would need pickle to read: refused
            k = next(iter(entry.calls))
            entry.calls[k] = {"A": ["|O", [1], 0]}
        path.write_bytes(entry.to_bytes())
    assert pool.read_entry(asg, seed) is None
    assert not path.exists()  # so the pool fills that place again

    from grader.grading.stages import _plan
    reference, plans = _plan(asg, seed, asg.spec.checks)  # the run computes live
    assert isinstance(reference, Reference) and plans


def test_a_changed_reference_gets_a_new_pool(cache, tmp_path):
    folder = tmp_path / "sigmoid-2-3-1"
    shutil.copytree(ASSIGNMENTS / "sigmoid-2-3-1", folder)
    asg = load_spec(folder)
    _one_entry(asg)
    before = pool.pool_folder(asg)
    (folder / "reference.py").write_text((folder / "reference.py").read_text() + "\n# revised\n")
    changed = load_spec(folder)
    assert pool.pool_folder(changed) != before
    assert pool.entry_seeds(pool.pool_folder(changed)) == []
    assert pool.choose_seed(changed)[1]  # incomplete: computed live, and filled again


def test_a_builder_killed_while_writing_leaves_nothing_that_lasts(cache):
    asg = find_assignment("sigmoid-2-3-1")
    folder = pool.pool_folder(asg)
    folder.mkdir(parents=True)
    old, new = folder / ".tmp-killed.entry", folder / ".tmp-writing.entry"
    old.write_bytes(b"half an entry")
    new.write_bytes(b"half an entry")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert pool.fill(asg, Reference(asg), size=1) == 1
    assert not old.exists() and new.exists()  # (a recent one may be another builder's, still writing)
    assert len(pool.entry_seeds(folder)) == 1


def test_one_builder_at_a_time(cache):
    asg = find_assignment("sigmoid-2-3-1")
    folder = pool.pool_folder(asg)
    with pool.locked(folder, wait=True) as mine:
        assert mine
        # another grader finds the lock taken and leaves the filling to its holder
        assert pool.fill(asg, Reference(asg), size=3, wait=False) == 0
    assert pool.fill(asg, Reference(asg), size=3, wait=False) == 3


def test_prepare_and_clear_from_the_command_line(cache):
    r = _cli("prepare", "sigmoid-2-3-1", "--size", "2", cache=cache)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("sigmoid-2-3-1: 2 entries in ")
    # it measures the solution too: the default cell limit (in the suite's own limits folder)
    assert "sigmoid-2-3-1: the solution's slowest cell took " in r.stdout and "by default" in r.stdout
    asg = find_assignment("sigmoid-2-3-1")
    assert len(pool.entry_seeds(pool.pool_folder(asg))) == 2
    r = _cli("prepare", "no-such-assignment", cache=cache)
    assert r.returncode == 2
    assert r.stderr.startswith("grade: error: unknown assignment") and "Traceback" not in r.stderr
    r = _cli("prepare", "--clear", cache=cache)
    assert r.returncode == 0 and "removed 1 pool folder" in r.stdout
    assert pool.entry_seeds(pool.pool_folder(asg)) == []


# ------------------------------------------------------------------------ grading, with kernels


def _pooled(nb, name: str, cache, *args: str) -> tuple[dict, bool]:
    """Grade in a fresh interpreter with `cache` (and its pools): the report, and whether torch loaded."""
    out = cache.parent / f"report-{os.getpid()}-{time.monotonic_ns()}.json"
    r = _cli(str(nb), "--assignment", name, "--format", "json", "--output", str(out), *args, cache=cache)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(out.read_text()), _torch(r)


def _outcome(report: dict) -> dict:
    """What a grade concluded: score, statuses, points, messages, diagnoses, flags."""
    checks = [{k: c[k] for k in ("id", "status", "points", "message", "diagnosis", "detail")} for c in report["checks"]]
    return {"score": report["score"], "max_score": report["max_score"], "status": report["status"],
            "seed": report["seed"], "checks": checks, "flags": report["flags"]}


def _differences(a: dict, b: dict) -> list[str]:
    """Where two outcomes differ, readably."""
    out = [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if k != "checks" and a[k] != b[k]]
    for ca, cb in zip(a["checks"], b["checks"]):
        out += [f"{ca['id']}.{k}: {ca[k]!r} != {cb[k]!r}" for k in ca if ca[k] != cb[k]]
    return out


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    """One cache with a two-entry pool for every assignment (its specs remembered there too)."""
    cache = tmp_path_factory.mktemp("pools") / "cache"
    r = _cli("prepare", *ALL, "--size", "2", "--no-measure", cache=cache)
    assert r.returncode == 0, r.stderr
    return cache


@pytest.mark.parametrize("name", ALL)
def test_grading_from_the_pool_equals_a_live_run_and_needs_no_torch(name, pools, tmp_path, monkeypatch):
    monkeypatch.setenv("NNGRADER_CACHE_DIR", str(pools))
    asg = find_assignment(name)
    seed = sorted(pool.entry_seeds(pool.pool_folder(asg)))[0]
    for nb in (asg.path("solution.ipynb"), WRONG[name]):
        pooled, torch_loaded = _pooled(nb, name, pools, "--seed", str(seed))
        # (a behaviour check scoring the parameters training returns predicts with them: the
        # reference's prediction on the notebook's own numbers, which no pool can hold)
        if nb.name == "solution.ipynb" and not any(c.predict_with for c in asg.spec.checks):
            assert not torch_loaded, f"{name}: grading the solution imported torch"
        # the same seed, no pool: computed live with torch, the same values and verdicts
        live, torch_loaded = _pooled(nb, name, tmp_path / "empty", "--seed", str(seed))
        assert torch_loaded
        assert pooled["status"] == "graded"
        assert _outcome(pooled) == _outcome(live), _differences(_outcome(pooled), _outcome(live))


def test_a_typical_wrong_notebook_is_graded_without_torch(pools):
    nb = NOTEBOOKS / "sigmoid-2-3-1" / "wrong_hidden_delta.ipynb"
    report, torch_loaded = _pooled(nb, "sigmoid-2-3-1", pools, "--seed", str(_seeds(pools)[0]))
    assert not torch_loaded
    assert report["score"] < report["max_score"]
    assert any(c["status"] == "fail" for c in report["checks"])


def test_a_run_without_a_seed_draws_from_a_complete_pool_and_without_one_computes_in_a_child(pools, tmp_path):
    nb = ASSIGNMENTS / "sigmoid-2-3-1" / "solution.ipynb"
    out = tmp_path / "r.json"
    r = _cli(str(nb), "--format", "json", "--output", str(out), cache=pools,
             extra_env={pool.POOL_SIZE_VARIABLE: "2"})
    assert r.returncode == 0, r.stderr
    assert not _torch(r)
    assert json.loads(out.read_text())["seed"] in _seeds(pools)
    # a pool of 2 is not a complete one of 3: a fresh seed, whose values a child process computes
    # while the kernel runs: torch never enters the grading process
    r = _cli(str(nb), "--format", "json", "--output", str(out), cache=pools,
             extra_env={pool.POOL_SIZE_VARIABLE: "3"})
    assert r.returncode == 0, r.stderr
    assert not _torch(r)
    report = json.loads(out.read_text())
    assert report["score"] == 11 and report["seed"] not in _seeds(pools)
    # the same run replayed with its seed, computed live in the grader: the same verdicts
    r = _cli(str(nb), "--format", "json", "--output", str(tmp_path / "again.json"), "--seed", str(report["seed"]),
             cache=pools, extra_env={pool.POOL_SIZE_VARIABLE: "3"})
    assert r.returncode == 0 and _torch(r), r.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert [(c["id"], c["status"], c["points"]) for c in again["checks"]] == \
        [(c["id"], c["status"], c["points"]) for c in report["checks"]]


def _seeds(cache) -> list[int]:
    """The seeds of the 2-3-1 assignment's pool in `cache`."""
    old = os.environ.get("NNGRADER_CACHE_DIR")
    os.environ["NNGRADER_CACHE_DIR"] = str(cache)
    try:
        return sorted(pool.entry_seeds(pool.pool_folder(find_assignment("sigmoid-2-3-1"))))
    finally:
        if old is None:
            del os.environ["NNGRADER_CACHE_DIR"]
        else:
            os.environ["NNGRADER_CACHE_DIR"] = old
