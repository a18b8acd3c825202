"""The LTI launch in real headless Chromium: from the simulated LMS's course page, the tool
opens in its frame (login initiation, the LMS's auto-posted id_token, the launch, the session
cookie) and shows the student's upload page there.

Both servers are on 127.0.0.1 (one site, two origins), so the cookies are first-party to the
frame; the SameSite=None; Secure cookies of a TLS deployment are pinned in test_lti.py.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from grader.service.store import Store
from tests.batch_support import ASSIGNMENT, SOLUTION
from tests.chromium_support import Browser, chromium
from tests.lti_support import LEARNER, Lms, Tool

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (bash .ci/setup)")


def frames(tree: dict) -> list[dict]:
    out = [tree["frame"]]
    for child in tree.get("childFrames", []):
        out += frames(child)
    return out


def in_frame(b: Browser, session: str, suffix: str, expression: str) -> object:
    """`expression` evaluated in the LMS page's frame once that frame shows a URL ending in
    `suffix` and the expression has a value (None after 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tree = b.send("Page.getFrameTree", session=session)["frameTree"]
        inner = next((f for f in frames(tree)[1:] if f["url"].endswith(suffix)), None)
        if inner is not None:
            world = b.send("Page.createIsolatedWorld", {"frameId": inner["id"]}, session=session)
            value = b.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "contextId": world["executionContextId"]},
                           session=session)["result"].get("value")
            if value:
                return value
        time.sleep(0.2)
    return None


def screenshot_feedback(b: Browser, session: str, lms: Lms, tool: Tool, path: Path) -> None:
    """The README's picture: the solution graded for real, its feedback page in the LMS frame."""
    from grader import grade_notebook

    report = grade_notebook(SOLUTION, ASSIGNMENT).to_dict()
    report["submission"] = {**report["submission"], "path": "solution.ipynb"}  # (no local path in the picture)
    store = Store(tool.store.path)
    data = SOLUTION.read_bytes()
    aid = store.add_attempt("lti-1-chrome-1", ASSIGNMENT, "solution.ipynb", hashlib.sha256(data).hexdigest(), data)
    job = store.claim("screenshot")
    store.finish(job.job_id, "screenshot", report["status"], "", report, time.time(), time.time(), 0)
    b.send("Page.navigate", {"url": f"{lms.url}/course?page=/s/{aid}/feedback"}, session=session)
    assert in_frame(b, session, f"/s/{aid}/feedback", "document.body?.innerText.includes('Grade')")
    b.send("Emulation.setDeviceMetricsOverride", {"width": 1100, "height": 720, "deviceScaleFactor": 1,
                                                  "mobile": False}, session=session)
    time.sleep(0.5)
    import base64

    shot = b.send("Page.captureScreenshot", {"format": "png"}, session=session)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_from_the_course_page_the_launch_opens_the_upload_page_in_the_lms_frame(tmp_path):
    """Core 4 (the launch in the platform's frame) end to end in a browser: OIDC login
    initiation, the form_post of the id_token, the state cookie kept by the frame, the session
    cookie, and the page allowed in the LMS's frame by its frame-ancestors."""
    lms = Lms().start()
    tool = Tool(tmp_path, lms).start()
    b = Browser()
    try:
        lms.launches["chrome-hint"] = lms.claims("chrome-1", LEARNER)
        target = b.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = b.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        b.send("Page.enable", session=session)
        b.send("Page.navigate", {"url": f"{lms.url}/course?hint=chrome-hint"}, session=session)
        h1 = in_frame(b, session, f"/a/{ASSIGNMENT}", "document.querySelector('h1')?.textContent")
        assert h1 == f"Hand in {ASSIGNMENT}"
        assert tool.store.user("lti-1-chrome-1").role == "student"
        if os.environ.get("NNGRADER_LTI_SCREENSHOT"):  # (set to regenerate docs/lti-feedback.png)
            screenshot_feedback(b, session, lms, tool, Path(os.environ["NNGRADER_LTI_SCREENSHOT"]))
    finally:
        b.close()
        tool.stop()
        lms.stop()
