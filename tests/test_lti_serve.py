"""`grade serve` itself as an LTI tool: a real server process (its grading worker, real
kernels) registered with the simulated LMS; a student launches, hands in, and the score the
LMS receives from the server's own passback sender is the one in the service's gradebook.
"""

from __future__ import annotations

import re
import time

import pytest

from grader.errors import GraderError
from grader.service.lti_store import LtiStore, platforms_from_config
from grader.service.store import Store
from tests.batch_support import ASSIGNMENT, notebook_bytes
from tests.lti_support import CLIENT_ID, DEPLOYMENT, LEARNER, Lms, launch
from tests.service_support import Server, free_port


def test_grade_serve_launches_grades_and_sends_the_gradebooks_score_to_the_lms(tmp_path):
    """Core launch to AGS score, end to end through `grade serve` (its platform from the
    config's [[lti.platform]]): the passback sender the server runs posts the counted
    attempt's final grade once."""
    lms = Lms().start()
    # (the platform registered by the service's config, as a deployment keeps it)
    config = (f'[[lti.platform]]\nissuer = "{lms.issuer}"\nclient_id = "{CLIENT_ID}"\n'
              f'deployment_id = "{DEPLOYMENT}"\nauth_login_url = "{lms.url}/auth"\n'
              f'auth_token_url = "{lms.url}/token"\nkeyset_url = "{lms.url}/jwks"\n')
    srv = Server(tmp_path, [], config=config, port=free_port()).setup()
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


def test_config_platforms_register_once_and_an_incomplete_one_is_one_line(tmp_path):
    """`[[lti.platform]]` in the service's config: registered at the first start, not again;
    a table that lacks a field stops the start with one line naming it."""
    store = Store(tmp_path / "s.sqlite")
    conf = tmp_path / "service.toml"
    full = ('[[lti.platform]]\nissuer = "https://lms.example"\nclient_id = "c"\ndeployment_id = "d"\n'
            'auth_login_url = "https://lms.example/a"\nauth_token_url = "https://lms.example/t"\n'
            'keyset_url = "https://lms.example/k"\n')
    conf.write_text(full, encoding="utf-8")
    assert platforms_from_config(store, conf) == 1 and platforms_from_config(store, conf) == 0
    assert [p.issuer for p in LtiStore(store).platforms()] == ["https://lms.example"]
    conf.write_text('[[lti.platform]]\nissuer = "https://other.example"\nclient_id = "c"\n', encoding="utf-8")
    with pytest.raises(GraderError, match="number 1 lacks deployment_id, auth_login_url"):
        platforms_from_config(store, conf)
    conf.write_text(full.replace("keyset_url", "keyset"), encoding="utf-8")
    with pytest.raises(GraderError, match="lacks keyset_url"):
        platforms_from_config(store, conf)
