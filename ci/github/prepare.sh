#!/usr/bin/env bash
# The action's step after grading, when the cache was not restored: fill the pool of hidden runs
# (and measure the cell limit) for the assignment just graded, so the cache saved next holds it
# and later runs draw their hidden inputs from it without importing torch. It never fails the
# job: the grade is already given, and a run without a pool computes its values live.
# In: REPORT (default grade-report.json), the report the Grade step wrote.
set -uo pipefail
REPORT="${REPORT:-grade-report.json}"
if [ -z "${GRADER_ASSIGNMENTS:-}" ]; then unset GRADER_ASSIGNMENTS; fi
folder=$(python3 - "$REPORT" <<'PY' 2>/dev/null
import json, sys
print(json.load(open(sys.argv[1], encoding="utf-8"))["assignment"]["folder"] or "")
PY
) || folder=""
if [ -z "$folder" ]; then
  echo "no assignment was graded: no pool to fill"
  exit 0
fi
if ! grade prepare "$folder"; then
  echo "::warning title=Pool not filled::the next run computes its hidden values live (see this step's log)"
fi
exit 0
