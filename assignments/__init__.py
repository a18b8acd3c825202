"""The assignments shipped with the grader: one folder per assignment (installed as `nngrader_assignments`)."""
