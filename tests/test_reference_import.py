"""Importing torch and an assignment's reference in the grader: one thread at a time, and a
failed torch import reported by its first cause, however often it is needed afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.torch_failure import torch_fails_once

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, path: list[Path]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [*path, ROOT])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_a_failed_torch_import_is_reported_by_its_cause_every_time(tmp_path: Path) -> None:
    shim = torch_fails_once(tmp_path / "shim", "-c")
    r = _python(
        "from grader.assignment.load import find_assignment\n"
        "from grader.assignment.reference import Reference\n"
        "asg = find_assignment('sigmoid-2-3-1')\n"
        "for _ in range(3):\n"
        "    try:\n"
        "        Reference(asg)\n"
        "    except Exception as e:\n"
        "        print(type(e).__name__, e)\n", [shim])
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 3, r.stderr
    # the first cause, each time: not the instructor's file, not torch's half-loaded modules
    assert all(line == "TorchUnavailable torch failed to import in the grader: OSError: cannot map libtorch: "
               "out of memory" for line in lines), lines


def test_torch_is_imported_only_under_the_import_lock(tmp_path: Path) -> None:
    # a thread holding the lock (as one importing torch does) keeps a second thread's reference
    # import waiting: their imports of torch never cross
    r = _python(
        "import sys, threading, time\n"
        "from grader.assignment import reference as expected, tensors\n"
        "from grader.assignment.load import find_assignment\n"
        "asg = find_assignment('sigmoid-2-3-1')\n"
        "done = []\n"
        "with tensors.IMPORT_LOCK:\n"
        "    t = threading.Thread(target=lambda: done.append(expected.Reference(asg)))\n"
        "    t.start()\n"
        "    time.sleep(3)\n"
        "    print('torch' in sys.modules, bool(done))\n"
        "t.join()\n"
        "print('torch' in sys.modules, bool(done))\n", [])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False", "True", "True"]
