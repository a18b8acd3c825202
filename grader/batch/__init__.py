"""Grading a class at once: submissions from an LMS export, a resumable SQLite gradebook,
class reports, and optionally a Dask cluster. See docs/batch.md."""
