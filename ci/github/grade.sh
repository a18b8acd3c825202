#!/usr/bin/env bash
# The action's grading step: grade once (the JSON report), then render the job summary
# ($GITHUB_STEP_SUMMARY) and the annotations from that one report. No --seed: each run draws
# its hidden inputs at random, from the cached pool when there is one (then without torch).
# In: NOTEBOOK (the path choose.sh chose), ASSIGNMENT (may be empty), FAIL_UNDER (may be empty),
#     REPORT (default grade-report.json). Exit: 0 graded at or above FAIL_UNDER; 1 below it;
#     2 the notebook or assignment is unusable; 3 the grader failed (a report says why).
set -uo pipefail
REPORT="${REPORT:-grade-report.json}"
notebook="${NOTEBOOK:?the notebook to grade}"  # chosen by choose.sh; if it is missing, grade writes a report saying so
args=(--format json --output "$REPORT")
if [ -n "${ASSIGNMENT:-}" ]; then args+=(--assignment "$ASSIGNMENT"); fi
if [ -z "${GRADER_ASSIGNMENTS:-}" ]; then unset GRADER_ASSIGNMENTS; fi

rm -f "$REPORT"
grade "$notebook" "${args[@]}"
status=$?
if [ ! -s "$REPORT" ]; then
  echo "::error title=Grading failed::the grader wrote no report (exit status $status)"
  exit "$(( status == 0 ? 3 : status ))"
fi
render=(--format github)
if [ -n "${FAIL_UNDER:-}" ]; then render+=(--fail-under "$FAIL_UNDER"); fi
grade render "$REPORT" "${render[@]}"
below=$?
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  python3 - "$REPORT" >>"$GITHUB_OUTPUT" <<'PY'
import json, sys
d = json.load(open(sys.argv[1], encoding="utf-8"))
print(f"score={d['score']:g}\nmax-score={d['max_score']:g}")
PY
fi
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$below"
