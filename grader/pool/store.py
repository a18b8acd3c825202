"""A pool of precomputed runs: hidden inputs and every reference value they need, for random seeds.

Computing expected values needs torch, whose import costs more than a second of CPU. A pool
holds, per assignment version, many entries computed once; a grade draws one at random and
replays the reference from it without importing torch. An entry is what the reference
returned for every call a run with its seed makes that depends only on (spec, reference,
seed): the hidden inputs' generators, the expected values, the common mistakes, the
hard-coding re-run's values. A call it does not hold (one on the student's own answers) goes
to the live reference, importing torch then.

The pool's folder is `<cache>/pools/<assignment id>-<key>/`, the key hashing the spec, the
assignment's Python files, the grader's planning code and the numpy and torch versions; one
file per seed, `<seed>.entry`: a JSON header (no executable data) and the raw bytes of the
arrays it describes. Entries are written atomically (temporary file, then rename); one
builder at a time holds the folder's lock. An entry that cannot be read is ignored (and
removed) and the run computes live.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib.util
import json
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from grader.assignment.model import Assignment
from grader.cachefiles import hash_package_files, hash_python_files, write_atomic
from grader.kernels.envs import BuildEvent, BuildReporter, build_reporter
from grader.options import cache_dir

POOL_SIZE = 256  # entries a pool needs before grades draw from it
POOL_SIZE_VARIABLE = "NNGRADER_POOL_SIZE"
_FORMAT = 1
_MAGIC = b"NNGRADER-POOL\n"
# what an entry is computed by: the pool, planning, the assignment side and the re-run's preparation
_PLANNING_CODE = ("pool/*.py", "plan/*.py", "assignment/*.py", "judging/rerun*.py")
_ARRAY_KINDS = "biufc"  # numeric dtypes only: an entry never holds objects


class Unpoolable(Exception):
    """A value the pool cannot hold (or a call it cannot key): computed live instead."""


class PooledError(Exception):
    """The reference raised this for these arguments when the entry was built."""


def pool_size() -> int:
    """How many entries a complete pool holds: $NNGRADER_POOL_SIZE, else POOL_SIZE."""
    try:
        return max(1, int(os.environ.get(POOL_SIZE_VARIABLE, POOL_SIZE)))
    except ValueError:
        return POOL_SIZE


def pools_dir() -> Path | None:
    """The folder holding every assignment's pools (None where there is no cache folder)."""
    base = cache_dir()
    return base / "pools" if base is not None else None


def pool_key(asg: Assignment) -> str | None:
    """What a pool's entries depend on, hashed: spec, the assignment's Python files, planning code, versions."""
    h = hashlib.sha256(f"{_FORMAT}:{asg.spec_sha256}".encode())
    try:
        hash_python_files(h, asg.folder)
        h.update(_grader_version())
    except OSError:
        return None
    return h.hexdigest()


@functools.cache
def _grader_version() -> bytes:
    """The planning code and the numpy and torch versions, hashed (once per process)."""
    h = hashlib.sha256(f"numpy {np.__version__}".encode())
    hash_package_files(h, _PLANNING_CODE)
    # torch's version from its version.py, read as text: importing torch is what the pool avoids
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:
        with contextlib.suppress(OSError):
            h.update((Path(spec.origin).parent / "version.py").read_bytes())
    return h.digest()


def pool_folder(asg: Assignment) -> Path | None:
    """The folder of the assignment's current pool (None without a cache folder)."""
    base, key = pools_dir(), pool_key(asg)
    if base is None or key is None:
        return None
    return base / f"{_safe(asg.id)}-{key[:24]}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def entry_seeds(folder: Path | None) -> list[int]:
    """The seeds a pool folder holds entries for."""
    if folder is None:
        return []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [int(n[:-6]) for n in names if n.endswith(".entry") and n[:-6].isdigit()]


def choose_seed(asg: Assignment) -> tuple[int, bool]:
    """A seed for a run without one: a random entry's if the pool is complete, else a fresh one.

    The flag says whether the pool is incomplete (the run may help build it)."""
    seeds = entry_seeds(pool_folder(asg))
    if len(seeds) >= pool_size():
        return secrets.choice(seeds), False
    return secrets.randbits(32), True


# ---------------------------------------------------------------------------------------------
# keys: a stable digest of a call's name and arguments (or a generator's name, rng state, trial)


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise Unpoolable(f"array of {value.dtype}")
        h.update(f"a{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, np.generic):
        h.update(f"g{value.dtype.str}".encode() + np.asarray(value).tobytes())
    elif isinstance(value, bool) or value is None:
        h.update(f"s{value!r}".encode())
    elif isinstance(value, int):
        h.update(f"i{value}".encode())
    elif isinstance(value, float):
        h.update(b"f" + struct.pack("<d", value))
    elif isinstance(value, str):
        h.update(f"t{len(value)}:".encode() + value.encode())
    elif isinstance(value, dict):
        h.update(f"d{len(value)}".encode())
        for k in sorted(value, key=str):
            _feed(h, str(k))
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"{'l' if isinstance(value, list) else 'u'}{len(value)}".encode())
        for v in value:
            _feed(h, v)
    else:
        raise Unpoolable(type(value).__name__)


def call_key(name: str, args: list[Any]) -> str:
    """The key of a reference call."""
    h = hashlib.sha256(b"call\0")
    _feed(h, name)
    _feed(h, list(args))
    return h.hexdigest()[:32]


def draw_key(name: str, rng: np.random.Generator, trial: int) -> str:
    """The key of a generator call: its name, the trial and the generator's state before it."""
    h = hashlib.sha256(b"draw\0")
    _feed(h, name)
    _feed(h, int(trial))
    h.update(json.dumps(rng.bit_generator.state, sort_keys=True).encode())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# encoding: JSON trees whose arrays point into one byte buffer


class _Writer:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def array(self, a: np.ndarray) -> list[Any]:
        a = np.asarray(a, order="C")  # (ascontiguousarray would make a 0-d array 1-d)
        data = a.tobytes()
        out = [a.dtype.str, list(a.shape), self.size]
        self.chunks.append(data)
        self.size += len(data)
        return out

    def encode(self, value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in _ARRAY_KINDS:
                raise Unpoolable(f"array of {value.dtype}")
            return {"A": self.array(value)}
        if isinstance(value, np.generic):
            if value.dtype.kind not in _ARRAY_KINDS:
                raise Unpoolable(f"scalar of {value.dtype}")
            return {"G": self.array(np.asarray(value))}
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return {"F": value.hex()}  # exact, nan and inf included
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise Unpoolable("dict with non-string keys")
            return {"D": [[k, self.encode(v)] for k, v in value.items()]}
        if isinstance(value, list):
            return {"L": [self.encode(v) for v in value]}
        if isinstance(value, tuple):
            return {"T": [self.encode(v) for v in value]}
        raise Unpoolable(type(value).__name__)


def _decode(tree: Any, data: bytes) -> Any:
    if tree is None or isinstance(tree, (bool, int, str)):
        return tree
    if not isinstance(tree, dict) or len(tree) != 1:
        raise ValueError("malformed entry")
    (tag, body), = tree.items()
    if tag in ("A", "G"):
        dtype, shape, offset = body
        dt = np.dtype(dtype)
        if dt.kind not in _ARRAY_KINDS:
            raise ValueError(f"entry holds an array of {dt}")
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.frombuffer(data, dtype=dt, count=count, offset=int(offset)).reshape(shape).copy()
        return arr if tag == "A" else arr[()]
    if tag == "F":
        return float.fromhex(body)
    if tag == "D":
        return {str(k): _decode(v, data) for k, v in body}
    if tag == "L":
        return [_decode(v, data) for v in body]
    if tag == "T":
        return tuple(_decode(v, data) for v in body)
    raise ValueError(f"malformed entry (tag {tag!r})")


class Entry:
    """One pool entry: a seed and the reference's answers for the run with that seed."""

    def __init__(self, key: str, seed: int, calls: dict[str, Any], draws: dict[str, Any], data: bytes):
        self.key, self.seed, self.calls, self.draws, self.data = key, seed, calls, draws, data

    def to_bytes(self) -> bytes:
        """The entry's file content."""
        header = json.dumps({"key": self.key, "seed": self.seed, "calls": self.calls,
                             "draws": self.draws}).encode()
        return _MAGIC + struct.pack("<Q", len(header)) + header + self.data

    @classmethod
    def from_bytes(cls, raw: bytes) -> Entry:
        """Read an entry's file content; ValueError if it is not one."""
        if not raw.startswith(_MAGIC) or len(raw) < len(_MAGIC) + 8:
            raise ValueError("not a pool entry")
        (n,) = struct.unpack_from("<Q", raw, len(_MAGIC))
        start = len(_MAGIC) + 8
        header = json.loads(raw[start:start + n])
        if not isinstance(header, dict) or not {"key", "seed", "calls", "draws"} <= set(header):
            raise ValueError("pool entry without its header")
        return cls(header["key"], int(header["seed"]), dict(header["calls"]), dict(header["draws"]),
                   raw[start + n:])


def read_entry(asg: Assignment, seed: int) -> Entry | None:
    """The pool's entry for `seed`, if there is a readable one for this assignment version.

    An entry that exists but cannot be read (corrupt, or for another key) is removed: the
    pool rebuilds it."""
    folder, key = pool_folder(asg), pool_key(asg)
    if folder is None or key is None:
        return None
    path = folder / f"{seed}.entry"
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        entry = Entry.from_bytes(raw)
        if entry.key != key or entry.seed != seed:
            raise ValueError("entry of another pool")
        for tree in entry.calls.values():  # every array inside the buffer: a truncated file is caught here
            if not (isinstance(tree, dict) and set(tree) == {"E"}):
                _decode(tree, entry.data)
        for out, state in entry.draws.values():
            _decode(out, entry.data)
            _decode(state, b"")
    except (ValueError, TypeError, KeyError, struct.error, OverflowError):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return entry


# ---------------------------------------------------------------------------------------------
# the reference, replayed from an entry (or recorded into one)


class PooledReference:
    """The reference's answers from a pool entry; a call the entry lacks goes to the live reference
    (imported then, with torch)."""

    def __init__(self, asg: Assignment, entry: Entry, live: Callable[[], Any]):
        self.assignment = asg
        self.entry = entry
        self._make_live = live
        self._live: Any = None
        self._lock = threading.Lock()
        self.live_calls = 0  # how many calls the entry could not answer

    @property
    def live(self) -> Any:
        """The live reference (loaded on first use)."""
        with self._lock:
            if self._live is None:
                self._live = self._make_live()
            return self._live

    def call(self, name: str, args: list[Any]) -> Any:
        """What the reference returns for these arguments: from the entry when it holds them."""
        try:
            tree = self.entry.calls.get(call_key(name, args))
        except Unpoolable:
            tree = None
        if tree is None:
            self.live_calls += 1
            return self.live.call(name, args)
        if isinstance(tree, dict) and "E" in tree:
            raise PooledError(str(tree["E"]))
        return _decode(tree, self.entry.data)

    def function(self, name: str) -> Callable[..., Any]:
        """A reference function; generators (rng, trial) replay from the entry."""
        def generate(rng: np.random.Generator, trial: int) -> Any:
            hit = self.entry.draws.get(draw_key(name, rng, trial))
            if hit is None:
                self.live_calls += 1
                return self.live.function(name)(rng, trial)
            out, state = hit
            rng.bit_generator.state = _decode(state, b"")
            return _decode(out, self.entry.data)
        return generate


class RecordingReference:
    """The live reference, remembering every call's answer (for a pool entry)."""

    def __init__(self, live: Any):
        self.live = live
        self.writer = _Writer()
        self.calls: dict[str, Any] = {}
        self.draws: dict[str, Any] = {}

    def call(self, name: str, args: list[Any]) -> Any:
        """Call the live reference and remember the answer (or the exception)."""
        key = call_key(name, args)
        try:
            result = self.live.call(name, copy.deepcopy(args))
        except Exception as e:
            self.calls[key] = {"E": f"{type(e).__name__}: {e}"}
            raise
        self.calls[key] = self.writer.encode(result)
        return result

    def function(self, name: str) -> Callable[..., Any]:
        """A reference function; generators are remembered with the rng state they leave."""
        def generate(rng: np.random.Generator, trial: int) -> Any:
            key = draw_key(name, rng, trial)
            out = self.live.function(name)(rng, trial)
            self.draws[key] = [self.writer.encode(out), _state_tree(rng)]
            return out
        return generate

    def entry(self, key: str, seed: int) -> Entry:
        """The entry holding everything recorded."""
        return Entry(key, seed, self.calls, self.draws, b"".join(self.writer.chunks))


def _state_tree(rng: np.random.Generator) -> Any:
    state = rng.bit_generator.state
    return _Writer().encode(state)  # (ints and strings only: no buffer needed)


def record(asg: Assignment, live: Any, seed: int) -> Entry:
    """Compute the entry for `seed`: every reference answer a run with this seed may need."""
    from grader.judging.rerun_judge import prepare_rerun
    from grader.plan.checks import plan

    rec = RecordingReference(live)
    plans = plan(asg, rec, seed)
    prepare_rerun(asg, rec, plans, seed)
    key = pool_key(asg)
    if key is None:
        raise Unpoolable("the assignment's files cannot be read")
    return rec.entry(key, seed)


def _private(folder: Path) -> None:
    # entries hold hidden inputs and their answers: only the grader's user may open them
    # (mkstemp's files are 0600 already)
    folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.mkdir(mode=0o700, exist_ok=True)


def temp_prefix(pid: int) -> str:
    """How the temporary files of process `pid`'s entries start (so what a killed builder
    was writing can be found and removed)."""
    return f".tmp-{pid}-"


def remove_temporary(folder: Path | None, pid: int) -> None:
    """The temporary file process `pid` (a builder killed while writing) left in `folder`."""
    if folder is None:
        return
    for t in folder.glob(temp_prefix(pid) + "*"):
        with contextlib.suppress(OSError):
            t.unlink()


def write_entry(folder: Path, entry: Entry) -> Path:
    """Write an entry atomically (temporary file in the same folder, then rename)."""
    _private(folder)
    final = folder / f"{entry.seed}.entry"
    write_atomic(final, entry.to_bytes(), temp_prefix(os.getpid()), ".entry")
    return final


@contextlib.contextmanager
def locked(folder: Path, wait: bool) -> Iterator[bool]:
    """Hold the pool folder's build lock (True), or, without `wait`, say it is taken (False)."""
    import fcntl

    _private(folder)
    with open(folder / ".lock", "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fill(asg: Assignment, live: Any, size: int | None = None, wait: bool = True,
         progress: Callable[[int, int], None] | None = None) -> int:
    """Add entries with fresh random seeds until the pool holds `size` (default: pool_size()).

    Returns how many entries the pool holds. Without `wait`, a pool another grader is
    filling is left to it."""
    folder = pool_folder(asg)
    if folder is None:
        return 0
    size = pool_size() if size is None else size
    with locked(folder, wait) as mine:
        if not mine:
            return len(entry_seeds(folder))
        _remove_leftovers(folder)
        have = set(entry_seeds(folder))
        while len(have) < size:
            seed = secrets.randbits(32)
            if seed in have:
                continue
            write_entry(folder, record(asg, live, seed))
            have.add(seed)
            if progress is not None:
                progress(len(have), size)
        return len(have)


def prepare(asg: Assignment, size: int | None = None, report: BuildReporter | None = None) -> int:
    """Fill the assignment's pool now (waiting for a grader that is filling it); the entries it holds.

    `report` (default: the one kernels.envs.report_builds installed) is told what happens, as
    environment builds are (an entry takes 0.1 s to 1 s: a whole pool, from seconds to
    minutes); nothing when the pool is complete already."""
    import time

    from grader.assignment.reference import Reference

    folder = pool_folder(asg)
    if folder is None:
        raise OSError("there is no cache folder (set $NNGRADER_CACHE_DIR)")
    size = pool_size() if size is None else size
    report = report or build_reporter()
    have = len(entry_seeds(folder))
    if have >= size:
        return have  # (torch and the reference not even imported: a warm CI run's prepare is free)
    if report is None:
        return fill(asg, Reference(asg), size, wait=True)
    start, title = time.monotonic(), f"the pool of hidden runs for {asg.id} ({size} entries)"

    def say(state: str, step: str) -> None:
        report(BuildEvent(state, title, step, time.monotonic() - start))

    say("start", "importing torch and the reference")
    try:
        n = fill(asg, Reference(asg), size, wait=True, progress=lambda have, of: say("step", f"{have}/{of} entries"))
    except BaseException:
        say("failed", "interrupted")
        raise
    say("done", f"{n} entries")
    return n


def _remove_leftovers(folder: Path, age: float = 3600.0) -> None:
    """Temporary files of builders killed while writing (an hour old: no live builder's)."""
    import time

    for p in folder.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - p.stat().st_mtime > age:
                p.unlink()


def clear(asg: Assignment | None = None) -> int:
    """Remove the pools of one assignment (every version), or every pool; how many folders went."""
    import shutil

    base = pools_dir()
    if base is None or not base.is_dir():
        return 0
    name = None if asg is None else re.compile(re.escape(_safe(asg.id)) + r"-[0-9a-f]{24}")
    removed = 0
    for folder in base.iterdir():
        if folder.is_dir() and (name is None or name.fullmatch(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
