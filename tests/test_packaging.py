"""Where assignments come from: GRADER_ASSIGNMENTS, courses' packages (entry points), the shipped ones."""

from __future__ import annotations

import sys
import types
from importlib.metadata import EntryPoint

from grader.assignment import load
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures"


def test_a_course_package_registered_as_an_entry_point_adds_its_assignments(monkeypatch):
    package = types.ModuleType("course_assignments")
    package.__path__ = [str(FIXTURES)]  # a package whose folder holds assignment folders
    monkeypatch.setitem(sys.modules, "course_assignments", package)
    points = [EntryPoint("course", "course_assignments", load.ENTRY_POINT_GROUP),
              EntryPoint("broken", "no_such_module_anywhere", load.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(load, "entry_points", lambda group: [p for p in points if p.group == group])
    monkeypatch.delenv("GRADER_ASSIGNMENTS", raising=False)
    known = load.known_assignments()
    assert known["logistic-external"] == FIXTURES / "logistic-external"
    assert "sigmoid-2-3-1" in known  # the shipped ones are still there; the broken package is left out
    assert load.find_assignment("logistic-external").id == "logistic-external"


def test_a_callable_entry_point_names_its_folder(monkeypatch):
    module = types.ModuleType("course_hook")
    module.folder = lambda: str(FIXTURES)
    monkeypatch.setitem(sys.modules, "course_hook", module)
    points = [EntryPoint("hook", "course_hook:folder", load.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(load, "entry_points", lambda group: points)
    assert load.registered_folders() == [FIXTURES]


def test_installed_course_packages_are_scanned_once_per_period(monkeypatch):
    scans: list[str] = []

    def lookup(group: str) -> list[EntryPoint]:
        scans.append(group)
        return []

    now = [1000.0]
    monkeypatch.setattr(load, "entry_points", lookup)
    monkeypatch.setattr(load.time, "monotonic", lambda: now[0])
    monkeypatch.delenv("GRADER_ASSIGNMENTS", raising=False)
    first = load.known_assignments()
    assert load.known_assignments() == first and load.find_assignment("sigmoid-2-3-1").id == "sigmoid-2-3-1"
    assert len(scans) == 1  # one grade asks several times: the packages are scanned once
    now[0] += load._REGISTERED_FRESH_S  # a long-running service sees packages installed since
    load.known_assignments()
    assert len(scans) == 2


def test_grader_assignments_comes_first(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADER_ASSIGNMENTS", str(tmp_path))
    assert load.search_path()[0] == tmp_path and load.search_path()[-1] == load.PACKAGE_ASSIGNMENTS
