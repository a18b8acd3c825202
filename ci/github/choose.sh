#!/usr/bin/env bash
# The action's step before grading: which notebook to grade, and what the cache of kernel
# environments and of the grader's own files is keyed by.
# In: NOTEBOOK (a path, or a glob such as *.ipynb), ASSIGNMENT (may be empty), GRADER_ASSIGNMENTS
#     (may be empty). Out (step outputs): notebook; env-key, the hash of the assignment's
#     requirements, Python and platform (`grade env key`); grader-version.
# Exit 2 when no single notebook is meant (none, or several): an ::error annotation and a line
# in the job summary list them.
set -uo pipefail
if [ -z "${GRADER_ASSIGNMENTS:-}" ]; then unset GRADER_ASSIGNMENTS; fi
out="${GITHUB_OUTPUT:-/dev/null}"

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
if ! notebook=$(grade find-notebook --notebook "${NOTEBOOK:-*.ipynb}" --assignment "${ASSIGNMENT:-}" 2>"$errors"); then
  # one line, already inert (no control characters, no "::"); % escaped as the runner expects
  message=$(sed -n '1s/^grade: error: //p' "$errors")
  message="${message:-the grader could not choose a notebook (see the log)}"
  echo "::error title=Which notebook?::${message//%/%25} (the action's notebook input)"
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    # markdown punctuation escaped: file names are the student's choice
    printf '### Not graded\n\n%s\n' "$(printf '%s' "$message" | sed 's/[][\\`*_{}()#+.!|<>~"$&'"'"'%:;,=?@^/-]/\\&/g')" >>"$GITHUB_STEP_SUMMARY"
  fi
  exit 2
fi
echo "notebook: $notebook"
# The environment's hash names what the kernels run (requirements, Python, platform); when the
# assignment cannot be loaded, grading reports why, and nothing is worth caching.
key=$(grade env key --assignment "${ASSIGNMENT:-}" "$notebook" 2>/dev/null) || key=none
version=$(grade --version 2>/dev/null | awk '{print $NF}')
{
  echo "notebook=$notebook"
  echo "env-key=$key"
  echo "grader-version=${version:-unknown}"
} >>"$out"
