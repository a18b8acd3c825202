"""The LTI launch in real headless Chromium: from the simulated LMS's course page, the tool
opens in its frame (login initiation, the LMS's auto-posted id_token, the launch, the session
cookie) and shows the student's upload page there.

Both servers are on 127.0.0.1 (one site, two origins), so the cookies are first-party to the
frame; the SameSite=None; Secure cookies of a TLS deployment are pinned in test_lti.py.
"""

from __future__ import annotations

import time

import pytest

from tests.batch_support import ASSIGNMENT
from tests.chromium_support import Browser, chromium
from tests.lti_support import LEARNER, Lms, Tool

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (bash .ci/setup)")


def frames(tree: dict) -> list[dict]:
    out = [tree["frame"]]
    for child in tree.get("childFrames", []):
        out += frames(child)
    return out


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
        deadline, inner = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            tree = b.send("Page.getFrameTree", session=session)["frameTree"]
            inner = next((f for f in frames(tree)[1:] if f["url"].endswith(f"/a/{ASSIGNMENT}")), None)
            if inner is not None:
                break
            time.sleep(0.2)
        assert inner is not None, [f["url"] for f in frames(tree)]
        world = b.send("Page.createIsolatedWorld", {"frameId": inner["id"]}, session=session)
        for _ in range(50):  # (the frame's document may still be loading)
            h1 = b.send("Runtime.evaluate", {"expression": "document.querySelector('h1')?.textContent",
                                             "contextId": world["executionContextId"], "returnByValue": True},
                        session=session)["result"].get("value")
            if h1:
                break
            time.sleep(0.1)
        assert h1 == f"Hand in {ASSIGNMENT}"
        assert tool.store.user("lti-1-chrome-1").role == "student"
    finally:
        b.close()
        tool.stop()
        lms.stop()
