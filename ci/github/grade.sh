#!/usr/bin/env bash
# The action's grading step: grade once (the JSON report), then render the job summary
# ($GITHUB_STEP_SUMMARY) and the annotations from that one report.
# In: NOTEBOOK (path or glob), ASSIGNMENT (may be empty), FAIL_UNDER (may be empty),
#     REPORT (default grade-report.json). Exit: 0 graded at or above FAIL_UNDER; 1 below it;
#     2 the notebook or assignment is unusable; 3 the grader failed (a report says why).
set -uo pipefail
REPORT="${REPORT:-grade-report.json}"
shopt -s globstar nullglob
# shellcheck disable=SC2206  # the glob is meant to expand
matches=($NOTEBOOK)
shopt -u nullglob
if [ "${#matches[@]}" -eq 0 ]; then
  notebook="$NOTEBOOK"  # no match: grade still writes a report saying the notebook is missing
else
  notebook="${matches[0]}"
  if [ "${#matches[@]}" -gt 1 ]; then
    # (a file name is the student's choice: no control characters, % escaped as the runner expects)
    shown=$(printf '%s' "$notebook" | tr -d '\000-\037\177' | sed 's/%/%25/g')
    echo "::warning title=Several notebooks::grading ${shown}; set the action's notebook input to choose another"
  fi
fi
args=(--format json --output "$REPORT")
if [ -n "${ASSIGNMENT:-}" ]; then args+=(--assignment "$ASSIGNMENT"); fi
if [ -n "${GITHUB_RUN_ID:-}" ]; then args+=(--seed "$GITHUB_RUN_ID"); fi  # fresh hidden inputs each run
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
