"""What a kernel environment's build shows while it runs (on stderr, never in a report on stdout):
on a terminal one line updated in place, what it does and how long it has taken; elsewhere (CI
logs) plain lines at the start, every PLAIN_EVERY_S seconds and at the end."""

from __future__ import annotations

import os
import shutil
import sys
import threading
from typing import TextIO

from grader.kernels.envs import BuildEvent

PLAIN_EVERY_S = 10.0


def duration(seconds: float) -> str:
    """`12 s`, `3 min 05 s`."""
    s = int(seconds)
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


class EnvProgress:
    """A build reporter (kernels.envs.report_builds) writing to `stream` (stderr by default);
    `live`: the line updated in place (default: when the stream is a terminal); `every`: the
    seconds between plain lines."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None,
                 every: float = PLAIN_EVERY_S, width: int | None = None):
        self.stream = stream or sys.stderr
        self.width = width  # live mode: the line's width (default: the terminal's)
        if live is None:
            try:
                live = self.stream.isatty() and os.environ.get("TERM") != "dumb"
            except (AttributeError, ValueError):
                live = False
        self.live = live
        self.every = every
        self._lock = threading.Lock()  # (builds run in a worker thread of `grade`)
        self._next: dict[str, float] = {}  # plain mode: when each build's next line is due
        self._drawn = ""  # live mode: the line on screen

    def __call__(self, e: BuildEvent) -> None:
        with self._lock:
            if self.live:
                self._live(e)
            else:
                self._plain(e)

    def _line(self, e: BuildEvent, width: int | None = None) -> str:
        """`building TITLE: 12 s, STEP`; within `width`, the title shortened first."""
        doing = "waiting for another grader building" if e.state == "wait" else "building"
        head, tail = f"{doing} {e.title}", f": {duration(e.elapsed)}, {e.step}"
        if width is not None and len(head) + len(tail) > width:
            head = head[: max(width - len(tail) - 1, 20)] + "…"
            if len(head) + len(tail) > width:
                tail = tail[: max(width - len(head) - 1, 0)] + "…"
        return head + tail

    def _end(self, e: BuildEvent) -> str:
        if e.state == "failed":
            how = "was stopped" if e.step == "interrupted" else "failed"
            return f"building {e.title} {how} after {duration(e.elapsed)}"
        if e.step == "built by another grader":
            return f"{e.title} was built by another grader (waited {duration(e.elapsed)})"
        return f"built {e.title} in {duration(e.elapsed)}"

    def _plain(self, e: BuildEvent) -> None:
        if e.state in ("done", "failed"):
            self._next.pop(e.title, None)
            self._write(self._end(e) + "\n")
            return
        first = e.state == "start" or e.title not in self._next
        if first or e.elapsed >= self._next[e.title]:
            self._next[e.title] = (e.elapsed // self.every + 1) * self.every
            if not first:
                self._write(self._line(e) + "\n")
            elif e.state == "wait":
                self._write(f"waiting for another grader building {e.title}\n")
            else:
                self._write(f"building {e.title}\n")

    def _live(self, e: BuildEvent) -> None:
        if e.state in ("done", "failed"):
            self._write("\r\x1b[K" + self._end(e) + "\n")
            self._drawn = ""
            return
        # a wrapped line cannot be redrawn in place: within the terminal's width
        width = self.width or shutil.get_terminal_size((100, 24)).columns - 1
        line = self._line(e, width)
        if line != self._drawn:
            self._write("\r\x1b[K" + line)
            self._drawn = line

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
