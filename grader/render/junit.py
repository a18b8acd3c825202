"""JUnit XML: one testcase per check, one per penalty, one for a grading error.

For GitLab's `reports: junit`, Jenkins and other CI hosts' test views. A testcase's name is
the check's label alone (`(hidden)` added for a hidden check; a penalty's `penalty CODE:
TARGET`), never its points, so a check keeps one identity from run to run whether it passes
or fails. Points: the suite's properties hold `score` and `max_score`; each testcase's
`system-out` starts with `points: 0/1` (a penalty's `points: -5.5`), and these add up to the
score; a failure's message ends with the same `(0/1 points)`. (The JUnit schema CI hosts
validate against, Jenkins' junit-10.xsd, allows no `properties` inside a testcase, so the
points are not there.) Text goes through `inert` (one line, no controls), and the XML writer
escapes it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from grader.inert import inert
from grader.render.common import check_name, deductions, feedback, headline, pts, verdict
from grader.render.text import render_text
from grader.report import Report


def _suite_name(report: Report) -> str:
    return f"nngrader {inert(report.assignment.get('id', '?'), 120)}"


def render_junit(report: Report) -> str:
    """The report as a JUnit XML document."""
    cls = _suite_name(report)
    cases: list[ET.Element] = []
    failures = errors = 0
    if report.status == "error":
        case = ET.Element("testcase", name="grading", classname=cls, time="0")
        ET.SubElement(case, "error", message=inert(report.error or "unknown error", 1000),
                      type=inert(report.error_stage or "error", 200)).text = inert(report.error or "", 4000)
        cases.append(case)
        errors += 1
    for c in report.checks:
        hidden = " (hidden)" if c.visibility == "hidden" else ""
        case = ET.Element("testcase", name=f"{inert(check_name(c), 120)}{hidden}", classname=cls, time="0")
        points = f"{pts(c.points)}/{pts(c.max_points)}"
        if c.status != "pass":
            lines = [inert(x) for x in feedback(c) if x]
            tag = "error" if c.status == "error" else "failure"
            ET.SubElement(case, tag, message=f"{lines[0] if lines else verdict(c)} ({points} points)",
                          type=inert(c.diagnosis[0].code if c.diagnosis else c.status, 60)).text = "\n".join(lines)
            errors += tag == "error"
            failures += tag == "failure"
            notes: list[str] = []
        else:
            notes = [inert(x) for x in feedback(c)[1:]] if c.diagnosis else []
        ET.SubElement(case, "system-out").text = "\n".join([f"points: {points}", *notes])
        cases.append(case)
    for f, taken in deductions(report):
        case = ET.Element("testcase", name=f"penalty {inert(f.code, 60)}: {inert(f.target, 120)}",
                          classname=cls, time="0")
        ET.SubElement(case, "failure", message=f"{inert(f.message, 1000)} (-{pts(taken)} points)",
                      type="penalty").text = inert(f.message)
        ET.SubElement(case, "system-out").text = f"points: -{pts(taken)}"
        failures += 1
        cases.append(case)
    suite = ET.Element("testsuite", name=cls, tests=str(len(cases)), failures=str(failures), errors=str(errors),
                       skipped="0", time=f"{report.duration_s:.3f}")
    props = ET.SubElement(suite, "properties")
    for name, value in (("score", pts(report.score)), ("max_score", pts(report.max_score)),
                        ("status", inert(report.status, 20)), ("seed", str(report.seed)),
                        ("notebook", inert(report.submission.get("path", ""), 300))):
        ET.SubElement(props, "property", name=name, value=value)
    suite.extend(cases)
    ET.SubElement(suite, "system-out").text = f"Score: {headline(report)}\n" + render_text(report)
    root = ET.Element("testsuites", name="nngrader", tests=str(len(cases)), failures=str(failures),
                      errors=str(errors), time=f"{report.duration_s:.3f}")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
