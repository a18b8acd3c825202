"""Where assignments come from: GRADER_ASSIGNMENTS, courses' packages (entry points), the shipped ones."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

import grader.assignment.spec as spec
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


def test_a_course_package_registered_as_an_entry_point_adds_its_assignments(monkeypatch):
    package = types.ModuleType("course_assignments")
    package.__path__ = [str(FIXTURES)]  # a package whose folder holds assignment folders
    monkeypatch.setitem(sys.modules, "course_assignments", package)
    points = [EntryPoint("course", "course_assignments", spec.ENTRY_POINT_GROUP),
              EntryPoint("broken", "no_such_module_anywhere", spec.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(spec, "entry_points", lambda group: [p for p in points if p.group == group])
    monkeypatch.delenv("GRADER_ASSIGNMENTS", raising=False)
    known = spec.known_assignments()
    assert known["logistic-external"] == FIXTURES / "logistic-external"
    assert "sigmoid-2-3-1" in known  # the shipped ones are still there; the broken package is left out
    assert spec.find_assignment("logistic-external").id == "logistic-external"


def test_a_callable_entry_point_names_its_folder(monkeypatch):
    module = types.ModuleType("course_hook")
    module.folder = lambda: str(FIXTURES)
    monkeypatch.setitem(sys.modules, "course_hook", module)
    points = [EntryPoint("hook", "course_hook:folder", spec.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(spec, "entry_points", lambda group: points)
    assert spec.registered_folders() == [FIXTURES]


def test_grader_assignments_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADER_ASSIGNMENTS", str(tmp_path))
    assert spec.search_path()[0] == tmp_path and spec.search_path()[-1] == spec.PACKAGE_ASSIGNMENTS
