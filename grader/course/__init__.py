"""The course around a batch: its roster, deadlines and late policy, a TA's overrides, the
grades each LMS imports as they are, and similarity between submissions.

This is the course's own model (kept in the same SQLite file as the gradebook), not options of
one batch: `grade batch`, the reports and a later web service read and edit the same tables.

- roster.py: rosters from Canvas, Moodle or a plain CSV
- late.py: due dates, extensions and the late policy
- store.py: the course's tables (roster, extensions, overrides, settings) and their migration
- grades.py: a student's final grade: automatic score, late penalty, overrides
- exports.py: grade files for Canvas and Moodle, and their feedback file names
- similarity.py: identical and near-identical code (winnowing fingerprints)
"""
