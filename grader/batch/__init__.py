"""Grading a class at once: submissions from an LMS export, a resumable SQLite gradebook (which
also holds the course's tables, grader.course), class reports and LMS exports, and optionally a
Dask cluster. See docs/batch.md."""
