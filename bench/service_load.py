"""Load test of the grading service on loopback: N students upload within a window, then wait
for their feedback.

Starts the service (bench/service_procs.py): a fresh database (SQLite in a temporary folder, or
--db: a SQLite path or a PostgreSQL URL), N students on its roster (`grade serve roster
import`), then `--web K` `grade serve` processes. Alone (the default), a web process grades with
its own worker, `--jobs J`; with `--workers W` separate `grade worker --jobs J` processes grade
and the web processes only serve (`--jobs 0`); with `--dask-workers D` a loopback Dask scheduler
and D single-thread `dask worker`s grade what the `grade worker` processes (one unless
--workers) hand them (`--scheduler`: such a process takes as many jobs as the cluster has
threads, whatever its --jobs).

N students (200 by default) each upload one notebook of sigmoid-2-3-1 (correct, a sign mistake,
a scaled gradient or the starter, in turn; tests/batch_support.py, each made once before the
clock starts) through the JSON API, to the web processes in turn, their uploads spread over the
window (60 s by default): evenly (`--arrivals uniform`) or rising toward its end as students
hand in before a due date (`--arrivals deadline`: density growing as e^(3x), the last tenth of
the window at about three times the mean rate). One asyncio process simulates them all, with one httpx
client per web process and a bounded connection pool.

Measured: per upload its latency (request to 202, the client's wait for a pooled connection
included); per submission its time to feedback, from the upload request to its result's finish
time in the database (one clock: the same machine), and the time until the student's own poll
showed it graded; every 2 s the queue (queued, grading) from /api/health, the resident memory
of each web process (the process alone: its worker, if any, is a process of its own) and the
load average. At the end, nothing lost: each 202's attempt has exactly one result in the
database (sqlite3, or psycopg for PostgreSQL); lost and graded-twice are counted.

Polling, not Server-Sent Events: the service's event stream reads the database every 0.5 s for
each open stream, on the web process's event loop, so 2,000 open streams would cost it some
4,000 reads a second and 2,000 connections, more than the load under test; nor need the
student's view be exact, since the time to feedback is read from the database. Each student
polls GET /api/submissions/N at a third of its expected wait (its queue position over the
throughput measured in the last minute), between 1.5 and 60 s, jittered by a third: 2,000
waiting students make a few dozen requests a second in all, and those about to be graded see
it within 1-2 s. The polls are counted and reported.

Prints a markdown table (p50/p95/max of the upload latency, the time to feedback and the time
until seen; the queue's depth), the outcome (accepted, graded, lost, graded twice, throughput,
web memory) and the machine line (cores, load average); with --out DIR, writes every
measurement to DIR/service_load.json, the plot to DIR/service_load.png (the queue and the
arrival rate over time, each submission's time to feedback against its upload time, web memory
and load) and the processes' logs to DIR/logs. Bounded: every request has a timeout, the whole
run a deadline (--deadline), and every process started is stopped at the end, on an error or
Ctrl-C too; the run stops early when every process of a tier the service needs (web
processes, grading workers, Dask workers, the scheduler) has exited. Exit status 0 when every upload was accepted and graded exactly once, 1 otherwise,
2 when the service would not start (one line: which process, and the last line of its log).

Run by hand:  .venv/bin/python bench/service_load.py [-n 200] [--window 60] [--jobs 2]
At scale:     .venv/bin/python bench/service_load.py -n 2000 --window 600 --arrivals deadline \\
                  --db postgresql://USER@127.0.0.1:5432/DBNAME --web 2 --dask-workers 2 \\
                  --deadline 5400 --out service-load-2000
              (DBNAME: an empty database, `createdb DBNAME`; the service creates its tables)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.service_procs import (  # noqa: E402
    Cluster,
    Refused,
    finish_times,
    import_roster,
    is_url,
    stored_attempts,
)
from tests.batch_support import ASSIGNMENT, notebook_bytes  # noqa: E402

KINDS = ("correct", "sign", "scaled", "starter")
UPLOAD = f"/api/assignments/{ASSIGNMENT}/submissions"
UPLOAD_S, POLL_S, HEALTH_S = 120.0, 30.0, 10.0  # whole requests (httpx's timeouts are per phase)
SAMPLE_S = 2.0
PROGRESS_S = 30.0  # a line on stderr: a run at scale takes the best part of an hour
MIN_POLL_S, MAX_POLL_S = 1.5, 60.0
RAMP = 3.0  # deadline arrivals: density proportional to e^(RAMP x) over the window, x in [0, 1]
CELL_TIMEOUT, TOTAL_TIMEOUT = 10, 120
MB = 1024 * 1024


@dataclass
class Submission:
    """One student's upload and what became of it (times in seconds)."""

    student: str
    kind: str
    web: int  # the web process it went to
    due: float  # when it is uploaded, after the start
    t_request: float = math.nan  # the upload request's wall-clock time
    upload_s: float = math.nan  # request to answer
    code: int = 0  # the answer's status
    attempt: int | None = None
    seen_s: float = math.nan  # request to the poll that showed it graded
    feedback_s: float = math.nan  # request to its result's finish time in the database
    results: int = 0  # its results in the database (1: neither lost nor graded twice)
    status: str = ""  # graded, error, timeout
    polls: int = 0
    error: str = ""


@dataclass
class Sample:
    t: float  # seconds after the start
    queued: int | None  # None: /api/health did not answer
    grading: int | None
    done: int | None
    health_ms: float  # its answer's latency (a probe of the web process's responsiveness)
    rss: list[int]  # each web process's resident memory, bytes
    load1: float


@dataclass
class Run:
    t0_wall: float
    wall_s: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    events: list[str] = field(default_factory=list)  # processes that exited during the run
    deadline_hit: bool = False
    halted: str = ""  # why the run stopped before every student was done (the service crippled)
    client_cpu_s: float = 0.0  # this process's CPU time while it simulated the class


# ---------------------------------------------------------------- the class


def arrival(i: int, n: int, window: float, how: str) -> float:
    """Seconds after the start at which the i-th of n students uploads."""
    if how == "uniform":
        return window * i / n  # (the first at once)
    u = (i + 0.5) / n  # the inverse of the e^(RAMP x) distribution, at evenly spaced quantiles
    return window * math.log1p(u * math.expm1(RAMP)) / RAMP


def plan(n: int, window: float, how: str, web: int, prefix: str) -> list[Submission]:
    return [Submission(f"{prefix}{i:04d}", KINDS[i % len(KINDS)], i % web, arrival(i, n, window, how))
            for i in range(n)]


class Pace:
    """When a waiting student polls next: a third of its expected wait, from its queue position
    and the throughput measured over the last minute (so the polls close in on the moment)."""

    def __init__(self) -> None:
        self.rate = 1.0  # jobs a second, until measured (a guess on the high side: polls early)

    def update(self, samples: list[Sample]) -> None:
        """The grading rate over the last minute's busy intervals: those with a queue waiting
        (idle time, before the first uploads or between bursts, would make it look slower)."""
        recent = [s for s in samples if s.done is not None and s.t >= samples[-1].t - 60]
        busy = done = 0.0
        for a, b in zip(recent, recent[1:]):
            if a.queued:
                busy, done = busy + b.t - a.t, done + b.done - a.done
        if busy >= 10 and done > 0:
            self.rate = done / busy

    def delay(self, state: dict[str, Any]) -> float:
        base = MIN_POLL_S  # grading, or at the head of the queue: 1-2 s
        if state.get("state") == "queued" and state.get("position"):
            base = min(MAX_POLL_S, max(MIN_POLL_S, state["position"] / self.rate / 3))
        return base * random.uniform(2 / 3, 4 / 3)  # (jitter: waiting students do not poll in step)


# ---------------------------------------------------------------- the students


async def upload(sub: Submission, client: httpx.AsyncClient, headers: dict[str, str],
                 data: bytes) -> dict[str, Any] | None:
    """The upload; its state on a 202, else None (the reason in sub.error)."""
    sub.t_request = time.time()
    m0 = time.monotonic()
    try:
        r = await asyncio.wait_for(client.post(UPLOAD, files={"file": ("hw.ipynb", data)}, headers=headers),
                                   UPLOAD_S)
    except (httpx.HTTPError, TimeoutError) as e:
        sub.error = f"upload failed: {e!r}"
        return None
    sub.upload_s, sub.code = time.monotonic() - m0, r.status_code
    if r.status_code != 202:
        sub.error = f"upload answered {r.status_code}: {r.text[:200]}"
        return None
    state = r.json()
    sub.attempt = int(state["id"])
    return state


async def wait_graded(sub: Submission, client: httpx.AsyncClient, headers: dict[str, str],
                      state: dict[str, Any], m0: float, deadline: float, pace: Pace) -> None:
    """Poll the submission (uploaded at monotonic time m0) until it is done or the run's
    deadline passes."""
    while state.get("state") != "done":
        left = deadline - time.monotonic()
        if left <= 0:
            sub.error = "not graded before the deadline"
            return
        await asyncio.sleep(min(left, pace.delay(state)))
        try:
            r = await asyncio.wait_for(client.get(f"/api/submissions/{sub.attempt}", headers=headers), POLL_S)
        except (httpx.HTTPError, TimeoutError):
            continue
        sub.polls += 1
        if r.status_code == 200:
            state = r.json()
    sub.seen_s = time.monotonic() - m0
    sub.status = str(state.get("status") or "")


async def student(sub: Submission, client: httpx.AsyncClient, token: str, data: bytes, t0: float,
                  deadline: float, pace: Pace) -> None:
    await asyncio.sleep(max(0.0, t0 + sub.due - time.monotonic()))
    headers = {"Authorization": f"Bearer {token}"}
    m0 = time.monotonic()
    state = await upload(sub, client, headers, data)
    if state is not None:
        await wait_graded(sub, client, headers, state, m0, deadline, pace)


# ---------------------------------------------------------------- the samples


def note(line: str) -> None:
    print(f"service_load: {line}", file=sys.stderr, flush=True)


def cpu_s() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.Error:
        return 0


async def one_sample(probe: httpx.AsyncClient, web: list[psutil.Process], t0: float) -> Sample:
    m = time.monotonic()
    queue: dict[str, int] | None = None
    with contextlib.suppress(httpx.HTTPError, TimeoutError, ValueError, KeyError, TypeError):
        queue = (await asyncio.wait_for(probe.get("/api/health"), HEALTH_S)).json()["queue"]
    health_ms = (time.monotonic() - m) * 1000
    get = (lambda k: int(queue.get(k, 0))) if queue is not None else (lambda k: None)
    return Sample(round(m - t0, 2), get("queued"), get("grading"), get("done"), round(health_ms, 1),
                  [rss(p) for p in web], os.getloadavg()[0])


def progress(sample: Sample, subs: list[Submission]) -> None:
    uploaded = sum(s.attempt is not None for s in subs)
    note(f"{sample.t:.0f} s: {uploaded} of {len(subs)} uploaded; queued {sample.queued}, grading "
         f"{sample.grading}; load {sample.load1:.1f}")


async def sampler(cluster: Cluster, subs: list[Submission], run: Run, pace: Pace, t0: float,
                  stop: asyncio.Event, halt: asyncio.Event) -> None:
    """Every SAMPLE_S until stopped, and once more at the end; notes any process that exited,
    and the progress every PROGRESS_S; sets `halt` when the service can no longer grade (rather
    than leave every student waiting until the deadline)."""
    web = [psutil.Process(p.pid) for p in cluster.web]
    noted: set[str] = set()
    # (a client of its own: the probe's latency is the server's, not the students' pool's)
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=HEALTH_S) as probe:
        while True:
            run.samples.append(await one_sample(probe, web, t0))
            pace.update(run.samples)
            if len(run.samples) % round(PROGRESS_S / SAMPLE_S) == 0:
                progress(run.samples[-1], subs)
            for p in cluster.dead():
                if p.name not in noted:
                    noted.add(p.name)
                    run.events.append(f"{run.samples[-1].t:.0f} s: {p.name} exited with status "
                                      f"{p.popen.returncode}: {p.last_line()}")
            if not run.halted and cluster.crippled():
                run.halted = cluster.crippled()
                halt.set()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_S)


async def simulate(subs: list[Submission], tokens: dict[str, str], data: dict[str, bytes], cluster: Cluster,
                   connections: int, deadline_s: float) -> Run:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    clients = [httpx.AsyncClient(base_url=u, limits=limits, timeout=POLL_S) for u in cluster.urls]
    run, pace, stop, halt = Run(time.time()), Pace(), asyncio.Event(), asyncio.Event()
    cpu0 = cpu_s()
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    probe = asyncio.create_task(sampler(cluster, subs, run, pace, t0, stop, halt))
    tasks = [asyncio.create_task(student(s, clients[s.web], tokens[s.student], data[s.student], t0, deadline,
                                         pace)) for s in subs]
    everyone = asyncio.gather(*tasks, return_exceptions=True)
    halted = asyncio.create_task(halt.wait())
    try:
        await asyncio.wait([everyone, halted], timeout=deadline_s + UPLOAD_S, return_when=asyncio.FIRST_COMPLETED)
        for sub, task in zip(subs, tasks):
            if not task.done():
                sub.error = "the run stopped early" if run.halted else "not done before the deadline"
            elif not task.cancelled() and task.exception() is not None:
                sub.error = f"the client failed: {task.exception()!r}"  # (an answer not as documented)
    finally:  # (on Ctrl-C too: no task left behind)
        for task in [*tasks, halted]:
            task.cancel()
        await asyncio.gather(*tasks, halted, return_exceptions=True)
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(probe, HEALTH_S + 5)
        for c in clients:
            await c.aclose()
    run.wall_s = time.monotonic() - t0
    run.client_cpu_s = cpu_s() - cpu0
    run.deadline_hit = any(s.error in ("not graded before the deadline", "not done before the deadline")
                           for s in subs)
    return run


# ---------------------------------------------------------------- the database's account


@dataclass
class Account:
    accepted: int = 0  # 202s
    graded: int = 0  # 202s with a result
    lost: int = 0  # 202s without one
    twice: int = 0  # 202s with more than one
    unanswered: int = 0  # attempts stored whose upload got no 202 (a client timeout)
    error: str = ""  # the check itself failed


def account(subs: list[Submission], db: str, prefix: str) -> Account:
    """Every 202's results in the database; each submission's time to feedback from them."""
    mine = [s for s in subs if s.attempt is not None]
    acc = Account(accepted=len(mine))
    if not mine:
        return acc
    try:
        times = finish_times(db, min(s.attempt for s in mine))
        stored = set(stored_attempts(db, prefix))
    except Exception as e:  # (the schema or the connection: said, and the run fails)
        acc.error = f"{type(e).__name__}: {e}".splitlines()[0]
        return acc
    for s in mine:
        done = sorted(times.get(s.attempt, []))
        s.results = len(done)
        if done:
            s.feedback_s = done[0] - s.t_request
    acc.graded = sum(s.results > 0 for s in mine)
    acc.lost = sum(s.results == 0 for s in mine)
    acc.twice = sum(s.results > 1 for s in mine)
    acc.unanswered = len(stored - {s.attempt for s in mine})
    return acc


# ---------------------------------------------------------------- the report


def pct(xs: list[float], p: float) -> float:
    xs = sorted(x for x in xs if not math.isnan(x))
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else math.nan


def three(xs: list[float]) -> tuple[float, float, float]:
    return pct(xs, 50), pct(xs, 95), pct(xs, 100)


def summarize(subs: list[Submission], run: Run, acc: Account, load0: tuple[float, float, float]) -> dict[str, Any]:
    ok = [s for s in subs if s.attempt is not None]
    ends = [s.t_request + s.feedback_s for s in ok if not math.isnan(s.feedback_s)]
    span = max(ends) - min(s.t_request for s in ok) if ends else math.nan
    last = run.samples[-1] if run.samples else None
    queued = [s.queued for s in run.samples if s.queued is not None]
    grading = [s.grading for s in run.samples if s.grading is not None]
    polls = sum(s.polls for s in subs)
    return {
        "students": len(subs), **asdict(acc), "refused": len(subs) - acc.accepted,
        "upload_s": three([s.upload_s for s in ok]), "feedback_s": three([s.feedback_s for s in ok]),
        "seen_s": three([s.seen_s for s in ok]), "queued": three(queued), "grading": three(grading),
        "health_ms": three([s.health_ms for s in run.samples]),
        "throughput_per_min": len(ends) / span * 60 if span and span > 0 else math.nan,
        "span_s": span, "wall_s": run.wall_s, "client_cpu_s": run.client_cpu_s, "polls": polls, "polls_per_s": polls / run.wall_s if run.wall_s else 0,
        "web_rss_peak_mb": [max(s.rss[i] for s in run.samples) / MB for i in range(len(last.rss))] if last else [],
        "web_rss_end_mb": [r / MB for r in last.rss] if last else [],
        "statuses": {k: sum(s.status == k for s in ok) for k in sorted({s.status for s in ok if s.status})},
        "load_start": load0, "load1_peak": max((s.load1 for s in run.samples), default=math.nan),
        "load_end": os.getloadavg(), "cores": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 1024**3,
        "deadline_hit": run.deadline_hit, "halted": run.halted, "events": run.events,
    }


def ms(x: float) -> str:
    return f"{x * 1000:.0f} ms"


def sec(x: float) -> str:
    return f"{x:.1f} s"


def table(s: dict[str, Any]) -> list[str]:
    rows = [("upload (request to 202, stored and fsynced)", s["upload_s"], ms),
            ("time to feedback (request to graded)", s["feedback_s"], sec),
            ("feedback seen by the student (request to the poll showing it)", s["seen_s"], sec),
            ("queue depth: queued (every 2 s)", s["queued"], lambda x: f"{x:.0f}"),
            ("queue depth: grading (every 2 s)", s["grading"], lambda x: f"{x:.0f}"),
            ("GET /api/health (every 2 s)", [x / 1000 for x in s["health_ms"]], ms)]
    out = ["| measure | p50 | p95 | max |", "|---|---|---|---|"]
    return out + [f"| {name} | {fmt(a)} | {fmt(b)} | {fmt(c)} |" for name, (a, b, c), fmt in rows]


def outcome(s: dict[str, Any]) -> list[str]:
    """The second table: what became of the uploads, the throughput and the web processes."""
    rss = "; ".join(f"{p:.0f} MB / {e:.0f} MB" for p, e in zip(s["web_rss_peak_mb"], s["web_rss_end_mb"]))
    rows = [("accepted (202)", f"{s['accepted']} of {s['students']}"),
            ("graded (a result in the database)", s["graded"]),
            ("lost (a 202 without a result)", s["lost"]),
            ("graded twice (a 202 with two results or more)", s["twice"]),
            ("stored without a 202 (the client gave up)", s["unanswered"]),
            ("throughput, first upload to last result", f"{s['throughput_per_min']:.0f} notebooks/min over "
                                                        f"{s['span_s']:.0f} s"),
            ("web process RSS, peak / at the end (each)", rss or "-"),
            ("status polls", f"{s['polls']} ({s['polls_per_s']:.1f}/s over {s['wall_s']:.0f} s)"),
            ("the simulated class's own CPU (this process)", f"{s['client_cpu_s']:.1f} s "
                                                              f"({s['client_cpu_s'] / s['wall_s']:.0%} of a core)"),
            ("results", ", ".join(f"{k} {v}" for k, v in s["statuses"].items()) or "none")]
    lines = ["| outcome | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "",
             "machine: {} cores, {:.1f} GB; load average {:.2f} {:.2f} {:.2f} at the start, 1-min peak {:.2f} "
             "during the run, {:.2f} {:.2f} {:.2f} at the end".format(
                 s["cores"], s["memory_gb"], *s["load_start"], s["load1_peak"], *s["load_end"])]
    if s["error"]:
        lines.append(f"the database check failed: {s['error']}")
    if s["deadline_hit"]:
        lines.append("the deadline passed before every submission was graded")
    if s["halted"]:
        lines.append(f"the run stopped early: {s['halted']}")
    return lines + [f"process: {e}" for e in s["events"]]


def errors(subs: list[Submission], most: int = 10) -> list[str]:
    """The students' errors, alike ones counted together (the first student named)."""
    by: dict[str, list[str]] = {}
    for s in subs:
        if s.error:
            by.setdefault(s.error, []).append(s.student)
    return [f"error: {len(who)} x {msg} (first {who[0]})" for msg, who in list(by.items())[:most]]


def topology(a: argparse.Namespace) -> str:
    db = "PostgreSQL" if a.db and is_url(a.db) else "SQLite"
    if a.dask_workers:
        grading = (f"{max(a.workers, 1)} `grade worker` handing to a loopback Dask cluster of "
                   f"{a.dask_workers} single-thread workers")
    elif a.workers:
        grading = f"{a.workers} `grade worker` --jobs {a.jobs}"
    else:
        grading = f"each with its own worker, --jobs {a.jobs}"
    return (f"{a.students} students, uploads over {a.window:g} s ({a.arrivals}); {a.web} web process"
            f"{'es' if a.web > 1 else ''}, {grading}; {db}; loopback")


def nan_if_none(x: int | None) -> float:
    return math.nan if x is None else float(x)


def plot(path: Path, subs: list[Submission], run: Run) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (q, fb, mem) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    t = [s.t for s in run.samples]
    q.plot(t, [nan_if_none(s.queued) for s in run.samples], label="queued")
    q.plot(t, [nan_if_none(s.grading) for s in run.samples], label="grading")
    q.set_ylabel("jobs")
    q.set_title("queue depth (/api/health every 2 s) and arrivals")
    starts = [s.t_request - run.t0_wall for s in subs if not math.isnan(s.t_request)]
    rate = q.twinx()
    if starts:
        width = max(5.0, round(max(starts) / 60))
        bins = [width * k for k in range(int(max(starts) // width) + 2)]
        rate.hist(starts, bins=bins, weights=[60 / width] * len(starts), alpha=0.25, color="grey",
                  label="uploads/min")
    rate.set_ylabel("uploads per minute")
    q.legend(loc="upper left")
    ok = [s for s in subs if s.attempt is not None]
    fb.scatter([s.t_request - run.t0_wall for s in ok], [s.feedback_s for s in ok], s=6, label="graded")
    fb.scatter([s.t_request - run.t0_wall for s in ok], [s.seen_s for s in ok], s=3, alpha=0.4,
               label="seen by the student")
    fb.set_ylabel("time to feedback, s")
    fb.set_title("each submission's time to feedback, by its upload time")
    fb.legend(loc="upper left")
    for i in range(len(run.samples[0].rss) if run.samples else 0):
        mem.plot(t, [s.rss[i] / MB for s in run.samples], label=f"web{i} RSS")
    mem.set_ylabel("MB")
    load = mem.twinx()
    load.plot(t, [s.load1 for s in run.samples], color="black", alpha=0.4, label="load average (1 min)")
    load.set_ylabel("load average")
    lines = mem.get_legend_handles_labels()
    more = load.get_legend_handles_labels()
    mem.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left")
    mem.set_xlabel("seconds after the start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def jsonable(x: Any) -> Any:
    """NaN (a measure not taken) as null: standard JSON."""
    if isinstance(x, float):
        return None if math.isnan(x) else x
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    return x


def write_out(out: Path, a: argparse.Namespace, subs: list[Submission], run: Run, summary: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {"config": {k: v for k, v in vars(a).items() if k != "out"}, "topology": topology(a),
           "t0_wall": run.t0_wall, "summary": summary, "samples": [asdict(s) for s in run.samples],
           "submissions": [asdict(s) for s in subs]}
    text = json.dumps(jsonable(doc), indent=1, default=str, allow_nan=False)
    (out / "service_load.json").write_text(text, encoding="utf-8")
    plot(out / "service_load.png", subs, run)


# ---------------------------------------------------------------- the run


def start(cluster: Cluster, a: argparse.Namespace) -> None:
    """The Dask cluster, the grading workers, then the web processes (each refused at once)."""
    separate = a.workers > 0 or a.dask_workers > 0
    if a.dask_workers:
        cluster.start_dask(a.dask_workers)
    limits = ["--timeout", str(CELL_TIMEOUT), "--total-timeout", str(TOTAL_TIMEOUT)]
    if separate:
        cluster.start_workers(max(a.workers, 1), ASSIGNMENT, a.jobs, limits)
    cluster.start_web(a.web, ASSIGNMENT, 0 if separate else a.jobs, limits)


def keep_logs(logs: Path, out: Path) -> None:
    if logs.is_dir():
        shutil.copytree(logs, out, dirs_exist_ok=True)


def bench(a: argparse.Namespace) -> int:
    load0 = os.getloadavg()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="nngrader-service-load-")))
        db = a.db if a.db and is_url(a.db) else str(Path(a.db or tmp / "service.sqlite").resolve())
        prefix = f"load{int(time.time()) % 10**6:06d}-"  # new students on a database used before
        subs = plan(a.students, a.window, a.arrivals, a.web, prefix)
        note(f"making {len(subs)} notebooks")
        data = {s.student: notebook_bytes(s.kind, s.student) for s in subs}
        if a.out:  # (run after the cluster's exit: its processes stopped, their logs whole)
            stack.callback(keep_logs, tmp / "logs", Path(a.out) / "logs")
        note("importing the roster")
        tokens = import_roster(tmp, db, [s.student for s in subs])
        note(f"starting the service: {topology(a)}")
        cluster = stack.enter_context(Cluster(tmp, db))
        start(cluster, a)
        note(f"running (logs in {Path(a.out or tmp) / 'logs'})")
        run = asyncio.run(simulate(subs, tokens, data, cluster, a.connections, a.deadline))
        cluster.stop()  # (the account is of a service at rest)
        acc = account(subs, db, prefix)
    summary = summarize(subs, run, acc, load0)
    print(topology(a) + "\n")
    print("\n".join(table(summary)) + "\n")
    print("\n".join(outcome(summary)))
    for line in errors(subs):
        print(line)
    if a.out:
        write_out(Path(a.out), a, subs, run, summary)
        print(f"measurements and plot: {Path(a.out) / 'service_load.json'}, {Path(a.out) / 'service_load.png'}")
    clean = acc.accepted == a.students and acc.graded == acc.accepted and not (acc.lost or acc.twice or acc.error)
    return 0 if clean and not any(s.error for s in subs) else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", "--students", type=int, default=200)
    p.add_argument("--window", type=float, default=60.0, help="Seconds over which the uploads arrive.")
    p.add_argument("--arrivals", choices=["uniform", "deadline"], default="uniform",
                   help="Spread evenly, or rising toward the end of the window.")
    p.add_argument("--db", help="SQLite path or postgresql://user@host:port/dbname (default: a fresh SQLite "
                                "file in a temporary folder).")
    p.add_argument("--web", type=int, default=1, help="Web processes; students go to them in turn.")
    p.add_argument("--workers", type=int, default=0, help="Separate `grade worker` processes.")
    p.add_argument("--dask-workers", type=int, default=0, help="A loopback Dask cluster of this many workers.")
    p.add_argument("--jobs", type=int, default=2, help="Each grading process's jobs at once (on Dask: the "
                                                       "cluster's threads).")
    p.add_argument("--connections", type=int, default=64, help="The client's connections per web process.")
    p.add_argument("--deadline", type=float, default=1800.0, help="Seconds after the first upload before the run gives up "
                                                                "(each step of the setup has its own bound).")
    p.add_argument("--out", help="Folder for service_load.json, service_load.png and the logs.")
    a = p.parse_args(argv)
    if min(a.students, a.web, a.jobs, a.connections) < 1 or min(a.workers, a.dask_workers) < 0:
        p.error("--students, --web, --jobs and --connections take 1 or more; --workers, --dask-workers 0 or more")
    return a


def interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # (a SIGTERM stops every process as Ctrl-C does)


def main() -> int:
    a = parse()
    signal.signal(signal.SIGTERM, interrupted)
    try:
        return bench(a)
    except Refused as e:
        print(f"service_load: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("service_load: interrupted; every process it started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
