"""A Gradescope autograder for one assignment: `setup.sh`, `run_autograder` and the assignment itself.

Gradescope unzips the bundle into /autograder/source, runs `setup.sh` once when it builds
the image, then `run_autograder` for each submission (the files in /autograder/submission);
whatever happens, `run_autograder` leaves /autograder/results/results.json behind. The
assignment folder (spec, reference, hidden generators) travels inside the bundle, so it
never has to be published where students can read it. So does the grader itself, as a wheel
(`wheels/nngrader-*.whl`, built from this grader's source tree, or the wheel named with
`--grader`): nngrader is not on the package index. A requirement given with `--grader`
(e.g. a git URL) is installed instead, and then no wheel travels.
"""

from __future__ import annotations

import io
import shlex
import stat
import zipfile
from pathlib import Path, PurePosixPath

from grader.assignment.model import Assignment
from grader.authoring.wheel import build_wheel, read_wheel

TORCH = "torch==2.13.0"  # the CPU build, from PyTorch's CPU index
WHEELS = "wheels"  # the bundle's folder for the grader's wheel (/autograder/source/wheels)

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
# bubblewrap gives student kernels the strongest isolation the container allows
apt-get install -y -qq bubblewrap >/dev/null 2>&1 || true
python3 -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --quiet --upgrade pip
/autograder/venv/bin/python -m pip install --quiet {torch} --index-url https://download.pytorch.org/whl/cpu
/autograder/venv/bin/python -m pip install --quiet {grader}
/autograder/venv/bin/grade list
# the assignment's kernel environment, built into the image: grading needs no network
GRADER_ASSIGNMENTS=/autograder/source/assignments /autograder/venv/bin/grade env build {assignment}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission. It grades the one notebook in the submission
# and always leaves results/results.json, even when the submission or the grader is broken.
# AUTOGRADER_ROOT moves /autograder (for trying the bundle out elsewhere).
set -u
ASSIGNMENT={assignment}
HIDDEN_VISIBILITY={visibility}
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
SOURCE="$(cd "$(dirname "$0")" && pwd)"
RESULTS="$ROOT/results/results.json"
GRADE="$ROOT/venv/bin/grade"
[ -x "$GRADE" ] || GRADE="$(command -v grade || echo grade)"
PYTHON="$ROOT/venv/bin/python"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3 || echo python3)"
export GRADER_ASSIGNMENTS="$SOURCE/assignments"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"

fallback() {{  # results.json with score 0 and one sentence for the student
  "$PYTHON" -c 'import json, sys
json.dump({{"score": 0, "output": sys.argv[1], "output_format": "text", "visibility": "visible",
           "tests": []}}, open(sys.argv[2], "w"), indent=2)' "$1" "$RESULTS"
}}

notebooks=()
while IFS= read -r -d '' nb; do notebooks+=("$nb"); done < <(
  find "$ROOT/submission" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' -print0 2>/dev/null | sort -z)

if [ "${{#notebooks[@]}}" -eq 0 ]; then
  fallback "No notebook (.ipynb file) was found in your submission. Submit your notebook file."
  exit 0
fi
if [ "${{#notebooks[@]}}" -gt 1 ]; then
  names=$(for nb in "${{notebooks[@]}}"; do printf '%s, ' "${{nb#"$ROOT/submission/"}}"; done)
  fallback "Your submission has ${{#notebooks[@]}} notebooks (${{names%, }}); submit exactly one."
  exit 0
fi
cd "$ROOT/submission"
"$GRADE" "${{notebooks[0]}}" --assignment "$ASSIGNMENT" --format gradescope \\
  --hidden-visibility "$HIDDEN_VISIBILITY" --output "$RESULTS"
status=$?
if [ ! -s "$RESULTS" ]; then
  fallback "The grader could not run on this submission (exit status $status). Please tell your instructor."
fi
exit 0
"""


def grader_files(grader: str | None) -> tuple[str, dict[str, bytes]]:
    """What setup.sh pip-installs, and the wheel the bundle carries for it (none for a requirement).

    None: this grader's wheel, built from its source tree. A path to an existing `.whl`: that
    wheel. Anything else: a pip requirement, installed as given.
    """
    if grader is not None and not (grader.endswith(".whl") and Path(grader).is_file()):
        return grader, {}
    name, data = build_wheel() if grader is None else read_wheel(Path(grader))
    return f"/autograder/source/{WHEELS}/{name}", {f"{WHEELS}/{name}": data}


def make_bundle(asg: Assignment, grader: str | None = None, hidden_visibility: str = "after_published") -> bytes:
    """The autograder zip for an assignment (setup.sh, run_autograder, wheels/, assignments/<id>/...).

    `grader`: None for this grader's own wheel, a wheel path, or a pip requirement (see grader_files).
    """
    req, wheels = grader_files(grader)
    files: dict[str, tuple[bytes, bool]] = {
        "setup.sh": (SETUP_SH.format(torch=shlex.quote(TORCH), grader=shlex.quote(req),
                                     assignment=shlex.quote(asg.id)).encode(), True),
        "run_autograder": (RUN_AUTOGRADER.format(assignment=shlex.quote(asg.id),
                                                 visibility=shlex.quote(hidden_visibility)).encode(), True),
    }
    files.update({name: (data, False) for name, data in wheels.items()})
    # Grading needs the spec, the reference and its data, never a notebook: the solution (and the
    # starter) stay out of the image, so no submission can reach them, even by name. So do the
    # course folders beside the solution (`folders`: each submission brings its own) and the
    # students' folder `starter/`: they hold the solution's and the starter's code.
    left_out = {*(PurePosixPath(f).parts[0] for f in asg.spec.folders), "starter"}
    for path in sorted(asg.folder.rglob("*")):
        rel = path.relative_to(asg.folder)
        if (path.is_file() and not path.is_symlink() and "__pycache__" not in rel.parts
                and path.suffix not in (".pyc", ".ipynb") and rel.parts[0] not in left_out):
            files[f"assignments/{asg.id}/{rel.as_posix()}"] = (path.read_bytes(), False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, (data, executable) in files.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if executable else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            z.writestr(info, data)
    return buf.getvalue()
