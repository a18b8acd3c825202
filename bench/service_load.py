"""Load test of the grading service on loopback: N students upload within a window, then wait
for their feedback.

Starts `grade serve` (a fresh database, N students on its roster, --jobs J) on a free loopback
port; N students (200 by default) each upload one notebook of sigmoid-2-3-1 (correct, a sign
mistake, a scaled gradient or the starter, in turn; see tests/batch_support.py) through the JSON
API, their uploads spread evenly over the window (60 s by default), with an httpx async client;
each then polls its submission until it is graded. Prints a markdown table: the p50/p95/max of
the upload latency (request to 202) and of the time to feedback (request to graded), the
throughput, and the check that nothing was lost: every 202 has exactly one result in the
database. Bounded: every request has a timeout and the whole run a deadline (--deadline).

Run by hand:  .venv/bin/python bench/service_load.py [-n 200] [--window 60] [--jobs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.batch_support import ASSIGNMENT, notebook_bytes  # noqa: E402
from tests.service_support import Server  # noqa: E402

KINDS = ("correct", "sign", "scaled", "starter")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


async def student(srv: Server, i: int, sid: str, start_at: float, deadline: float,
                  out: dict[str, list[float]], errors: list[str]) -> None:
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    data = notebook_bytes(KINDS[i % len(KINDS)], sid)
    headers = {"Authorization": f"Bearer {srv.tokens[sid]}"}
    async with httpx.AsyncClient(base_url=srv.url, headers=headers, timeout=60) as c:
        t0 = time.monotonic()
        try:
            r = await c.post(f"/api/assignments/{ASSIGNMENT}/submissions", files={"file": ("hw.ipynb", data)})
        except httpx.HTTPError as e:
            errors.append(f"{sid}: upload failed: {e!r}")
            return
        out["upload"].append(time.monotonic() - t0)
        if r.status_code != 202:
            errors.append(f"{sid}: upload answered {r.status_code}: {r.text[:200]}")
            return
        sub = r.json()
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            try:
                s = (await c.get(f"/api/submissions/{sub['id']}")).json()
            except httpx.HTTPError:
                continue
            if s["state"] == "done":
                out["feedback"].append(time.monotonic() - t0)
                return
        errors.append(f"{sid}: not graded before the deadline")


async def run(srv: Server, n: int, window: float, deadline_s: float) -> tuple[dict[str, list[float]], list[str], float]:
    out: dict[str, list[float]] = {"upload": [], "feedback": []}
    errors: list[str] = []
    t0 = time.monotonic()
    deadline = t0 + deadline_s
    await asyncio.gather(*(student(srv, i, f"u{i:03d}", t0 + window * i / n, deadline, out, errors)
                           for i in range(n)))
    return out, errors, time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=200)
    p.add_argument("--window", type=float, default=60.0, help="Seconds over which the uploads are spread.")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--deadline", type=float, default=1800.0, help="Seconds before the run gives up.")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="nngrader-service-load-") as tmp:
        srv = Server(Path(tmp), [f"u{i:03d}" for i in range(a.n)], jobs=a.jobs, cell_timeout=10,
                     total_timeout=120).setup().start()
        try:
            out, errors, wall = asyncio.run(run(srv, a.n, a.window, a.deadline))
        finally:
            srv.stop()
        accepted = srv.rows("SELECT count(*) FROM attempts")[0][0]
        per = srv.rows("SELECT j.attempt_id, count(r.job_id) FROM jobs j LEFT JOIN results r ON r.job_id = j.id "
                       "GROUP BY j.attempt_id")
        lost = sum(1 for _, k in per if k == 0)
        twice = sum(1 for _, k in per if k > 1)
    up, fb = out["upload"], out["feedback"]
    print(f"{a.n} students, uploads spread over {a.window:g} s, --jobs {a.jobs}, loopback\n")
    print("| measure | p50 | p95 | max |\n|---|---|---|---|")
    print(f"| upload (request to 202) | {pct(up, 50) * 1000:.0f} ms | {pct(up, 95) * 1000:.0f} ms | "
          f"{max(up) * 1000:.0f} ms |")
    print(f"| time to feedback (request to graded) | {pct(fb, 50):.1f} s | {pct(fb, 95):.1f} s | {max(fb):.1f} s |")
    print(f"\naccepted {accepted}, graded {len(fb)}, lost {lost}, graded twice {twice}; "
          f"{len(fb) / wall * 60:.0f} notebooks/min over {wall:.0f} s; median upload {statistics.median(up) * 1000:.0f} ms")
    for e in errors[:10]:
        print("error:", e)
    return 0 if not errors and lost == 0 and twice == 0 and accepted == a.n else 1


if __name__ == "__main__":
    sys.exit(main())
