"""`grade serve` itself as an LTI tool: a real server process (its grading worker, real
kernels) registered with the simulated LMS; a student launches, hands in, and the score the
LMS receives from the server's own passback sender is the one in the service's gradebook.
"""

from __future__ import annotations

import re
import time

from grader.service.lti_store import LtiStore
from grader.service.store import Store
from tests.batch_support import ASSIGNMENT, notebook_bytes
from tests.lti_support import CLIENT_ID, DEPLOYMENT, LEARNER, Lms, launch
from tests.service_support import Server, free_port


def test_grade_serve_launches_grades_and_sends_the_gradebooks_score_to_the_lms(tmp_path):
    """Core launch to AGS score, end to end through `grade serve`: the passback sender the
    server runs posts the counted attempt's final grade once."""
    lms = Lms().start()
    srv = Server(tmp_path, [], port=free_port()).setup()
    store = Store(srv.db)
    LtiStore(store).add_platform(lms.issuer, CLIENT_ID, DEPLOYMENT, f"{lms.url}/auth", f"{lms.url}/token",
                                 f"{lms.url}/jwks")
    store.close()
    lms.tool_url = srv.url
    srv.start()
    try:
        c, r = launch(srv.url, lms, lms.claims("e2e-1", LEARNER))
        assert r.status_code == 303, r.text
        page = c.get(f"{srv.url}/a/{ASSIGNMENT}").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)[1]
        up = c.post(f"{srv.url}/a/{ASSIGNMENT}/submit", data={"csrf": csrf},
                    files={"file": ("hw.ipynb", notebook_bytes("sign", "e2e-1"))})
        aid = int(up.headers["location"].rsplit("/", 1)[1])
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not lms.scores:
            time.sleep(0.5)
        score, = lms.scores
        graded = c.get(f"{srv.url}/api/submissions/{aid}/report").json()
        assert score["userId"] == "e2e-1" and score["scoreGiven"] == graded["final"] < 11
        assert score["scoreMaximum"] == graded["max_score"] and score["gradingProgress"] == "FullyGraded"
        assert score["comment"].endswith(f"/s/{aid}/feedback")
        assert srv.rows("SELECT state, tries FROM lti_passbacks") == [("sent", 1)]
    finally:
        srv.stop()
        lms.stop()
