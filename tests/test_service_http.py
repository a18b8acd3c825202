"""The grading service over HTTP: a real `grade serve` on loopback, real SQLite, real kernels.

One server for the module; each test uses its own students so their attempts do not mix.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import zipfile

import httpx
import nbformat
import pytest

from grader.service import auth
from grader.service.app import build_app
from grader.service.core import Service
from grader.service.openapi import SPEC
from grader.service.store import Store
from tests.batch_support import ASSIGNMENT, SOLUTION, notebook_bytes
from tests.conftest import ROOT
from tests.service_support import Server

CONFIG = f'[assignments.{ASSIGNMENT}]\nmax_upload = "1MB"\nmax_submissions = 3\nwindow = "1h"\n'
STUDENTS = ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("service"), STUDENTS, CONFIG).setup().start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def graded_s1(srv):
    """s1's correct notebook, graded."""
    sub = srv.submit("s1", "correct")
    return srv.wait_done("s1", sub["id"])


def message(r) -> str:
    """The one-line error of a response (JSON body or message page)."""
    if r.headers["content-type"].startswith("application/json"):
        return r.json()["error"]
    return re.search(r'id="message">([^<]*)<', r.text)[1]


def app_routes(tmp_path) -> list[tuple[str, set[str]]]:
    app = build_app(Service(Store(tmp_path / "routes.sqlite"), {}, auth.new_key()))
    return [(r.path, set(r.methods or [])) for r in app.routes]


def test_an_upload_is_accepted_202_queued_then_graded_with_its_feedback_page(srv, graded_s1):
    assert (graded_s1["status"], graded_s1["score"], graded_s1["max_score"]) == ("graded", 11.0, 11.0)
    with srv.api("s1") as c:
        r = c.get(graded_s1["feedback_url"])
        assert r.status_code == 200
        assert "Grade: 11/11" in r.text and "PASS" in r.text
        assert "script-src" not in r.headers["content-security-policy"]  # (the feedback page runs no script)
        rep = c.get(f"/api/submissions/{graded_s1['id']}/report").json()
        assert rep["final"] == 11.0 and {ch["status"] for ch in rep["report"]["checks"]} == {"pass"}
        assert "folder" not in rep["report"]["assignment"]  # (no path of the server's)


def test_hidden_checks_details_never_reach_a_student(srv):
    # Hidden checks are stored with grader-side facts only (grader.judging.hidden); here a stored
    # report is given a hidden check's inputs and expected values anyway (as a grader with a bug
    # would record them), and neither the API nor the feedback page may show them.
    sub = srv.wait_done("s2", srv.submit("s2", "sign")["id"])
    (job, text), = srv.rows(f"SELECT r.job_id, r.report FROM results r JOIN jobs j ON j.id = r.job_id "
                            f"WHERE j.attempt_id = {sub['id']}")
    stored = json.loads(text)
    hidden = [c for c in stored["checks"] if c["visibility"] == "hidden"]
    assert hidden and any(c["status"] == "fail" for c in hidden)
    for c in hidden:
        c["detail"] |= {"inputs": {"x": "HIDDEN-INPUT-7319"}, "expected": "HIDDEN-EXPECTED-7319"}
    db = sqlite3.connect(srv.db, timeout=30)
    with db:
        db.execute("UPDATE results SET report = ? WHERE job_id = ?", (json.dumps(stored), job))
    db.close()
    with srv.api("s2") as c:
        api = c.get(f"/api/submissions/{sub['id']}/report")
        page = c.get(f"/s/{sub['id']}/feedback")
    assert api.status_code == page.status_code == 200
    assert "sign" in page.text  # (the diagnosis of a hidden check is the student's to read)
    for ch in api.json()["report"]["checks"]:
        if ch["visibility"] == "hidden":
            assert not ch.get("detail")
    for text in (api.text, page.text):
        assert "HIDDEN-" not in text


@pytest.mark.parametrize("name,data,status,words", [
    ("notes.txt", b"just some text", 400, "not a notebook"),
    ("hw.zip", None, 400, "a zip archive, not a notebook"),
    ("big.ipynb", b"{" + b" " * (1 << 20) + b"}", 413, "over the limit of 1048576 bytes"),
    ("empty.ipynb", b"", 400, "the file is empty"),
])
def test_bad_uploads_get_a_clear_status_and_one_line(srv, name, data, status, words):
    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("hw.ipynb", notebook_bytes("correct", "s4"))
        data = buf.getvalue()
    with srv.api("s4") as c:
        r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions", files={"file": (name, data)})
    assert r.status_code == status
    assert words in r.json()["error"] and "\n" not in r.json()["error"]
    assert srv.rows("SELECT count(*) FROM attempts WHERE user_id = 's4'") == [(0,)]  # nothing kept


def test_an_upload_without_a_content_length_is_refused_once_past_the_limit(srv):
    sent = []

    def body():  # (a generator: httpx sends it chunked, with no Content-Length)
        yield (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.ipynb\"\r\n"
               b"Content-Type: application/octet-stream\r\n\r\n{")
        for _ in range(64):  # 64 MB, far past the 1 MB limit
            sent.append(1)
            yield b" " * (1 << 20)
        yield b"}\r\n--b--\r\n"

    with srv.api("s4") as c:
        try:
            r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions", content=body(),
                       headers={"Content-Type": "multipart/form-data; boundary=b"})
        except httpx.HTTPError:  # (the server may close the connection before all is sent)
            r = None
    if r is not None:
        assert r.status_code == 413 and "over the limit of 1048576 bytes" in r.json()["error"]
    assert len(sent) < 64  # the server stopped reading: the sender never got to the end
    assert srv.rows("SELECT count(*) FROM attempts WHERE user_id = 's4'") == [(0,)]


def test_a_wrong_assignment_an_expired_token_and_no_file_are_refused(srv):
    with srv.api("s4") as c:
        r = c.post("/api/assignments/nope/submissions", files={"file": ("hw.ipynb", b"{}")})
        assert r.status_code == 404 and "no assignment 'nope' here" in r.json()["error"]
        r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions", data={"x": "1"})
        assert r.status_code == 400 and "no file" in r.json()["error"]
    store = Store(srv.db)
    store.add_token("s4", auth.token_hash("ngt_expired"), time.time() - 10, replace=False)
    store.close()
    r = srv.api("s4").get("/api/submissions", headers={"Authorization": "Bearer ngt_expired"})
    assert r.status_code == 401 and "expired" in r.json()["error"]
    r = srv.api("s4").get("/api/submissions", headers={"Authorization": "Bearer ngt_nobody"})
    assert r.status_code == 401 and r.json() == {"error": "unknown access token"}


def test_past_the_submission_limit_the_answer_is_429_with_the_time_of_the_next_one(srv):
    ids = [srv.submit("s3", "starter")["id"] for _ in range(3)]
    with srv.api("s3") as c:
        r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions",
                   files={"file": ("hw.ipynb", notebook_bytes("starter", "s3"))})
    assert r.status_code == 429
    assert re.search(r"at most 3 submissions per 1 h: the next one is allowed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                     r.json()["error"])
    assert 3500 < int(r.headers["retry-after"]) <= 3600
    for i in ids:
        srv.wait_done("s3", i)


def test_a_student_reaches_none_of_another_students_attempts_on_any_route(srv, graded_s1, tmp_path):
    theirs = graded_s1["id"]
    routes = app_routes(tmp_path)
    with_id = [p for p, m in routes if "{id}" in p]
    assert len(with_id) >= 4
    with srv.api("s5") as c:
        for path in with_id:
            mine_missing = c.get(path.replace("{id}", "999999"))
            other = c.get(path.replace("{id}", str(theirs)))
            assert other.status_code == 404, path
            # the same answer as for an id that does not exist: nothing says the attempt is there
            assert message(other).replace(str(theirs), "N") == message(mine_missing).replace("999999", "N"), path
        assert c.get("/api/submissions").json() == []
        instructor_only = [p for p, _ in routes if p.startswith("/i/") or p.endswith(("/gradebook", "/regrade"))]
        for path in instructor_only:
            url = path.replace("{assignment}", ASSIGNMENT).replace("{name}", "s1")
            r = c.post(url) if "regrade" in url else c.get(url)
            assert r.status_code == 403, path
    # the same routes, logged in through the browser's cookie session
    cookie_client, _ = srv.browser_session("s5")
    for path in with_id:
        assert cookie_client.get(path.replace("{id}", str(theirs))).status_code == 404, path


def test_without_a_login_pages_go_to_the_login_form_and_the_api_says_401(srv):
    with srv.api("s1") as c:
        c.headers.pop("Authorization")
        assert c.get("/s/1").headers["location"] == "/login"
        r = c.get("/api/submissions/1")
        assert r.status_code == 401 and "log in first" in r.json()["error"]


def test_forms_need_the_sessions_csrf_token(srv):
    c, token = srv.browser_session("s6")
    files = {"file": ("hw.ipynb", notebook_bytes("starter", "s6"))}
    r = c.post(f"/a/{ASSIGNMENT}/submit", files=files, data={"csrf": "forged"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = c.post(f"/a/{ASSIGNMENT}/submit", files=files)
    assert r.status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    r = c.post(f"/a/{ASSIGNMENT}/submit", files=files, data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"].startswith("/s/")
    srv.wait_done("s6", int(r.headers["location"].split("/")[-1]))
    # a login form posted from elsewhere (no pre-login cookie) is refused too
    import httpx

    r = httpx.post(f"{srv.url}/login", data={"token": srv.tokens["s6"], "csrf": "x"})
    assert r.status_code == 403


def test_script_in_a_file_name_or_a_notebook_is_inert_in_every_page(srv):
    nb = nbformat.read(SOLUTION, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("<script>alert('md')</script>"))
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('<img src=x onerror=alert(1)>')"))
    name = "<img src=x onerror=alert(2)>.ipynb"
    sub = srv.wait_done("s5", srv.submit("s5", data=nbformat.writes(nb).encode(), name=name)["id"])
    with srv.api("s5") as c:
        pages = [c.get(u) for u in (f"/s/{sub['id']}", f"/s/{sub['id']}/feedback", "/history", f"/a/{ASSIGNMENT}")]
    with srv.api("ta") as c:
        pages += [c.get(u) for u in (f"/i/{ASSIGNMENT}/", f"/i/{ASSIGNMENT}/gradebook")]
    for r in pages:
        assert r.status_code == 200, r.url
        assert "<script>alert" not in r.text and "<img src=x" not in r.text, r.url
        csp = r.headers["content-security-policy"]
        assert "'unsafe-inline'" not in csp.split("style-src")[0], r.url  # no inline script allowed
    assert "img src=x onerror=alert(2)&gt;.ipynb" in pages[0].text  # shown, as text
    assert "img src=x onerror=alert(1)&gt;" in pages[1].text


def test_instructors_see_the_dashboard_gradebook_and_export_and_regrade_keeps_old_results(srv, graded_s1):
    with srv.api("ta") as c:
        dash = c.get(f"/i/{ASSIGNMENT}/")
        assert dash.status_code == 200 and f"Class report: {ASSIGNMENT}" in dash.text
        assert 'href="feedback/s1.html"' in dash.text
        assert '<meta http-equiv="refresh" content="15">' in dash.text  # (live: the page reloads itself)  # (each student's link, relative, as in report.html)
        r = c.get(f"/i/{ASSIGNMENT}/feedback/s1.html")
        assert (r.status_code, r.headers["location"]) == (303, f"/s/{graded_s1['id']}/feedback")
        book = c.get(f"/i/{ASSIGNMENT}/gradebook")
        assert f"/s/{graded_s1['id']}" in book.text
        csv_text = c.get(f"/i/{ASSIGNMENT}/export.csv").text
        assert re.search(r"^s1,Student s1,11,11,", csv_text, re.MULTILINE)
        assert c.get(f"/i/{ASSIGNMENT}/export.csv?format=nope").status_code == 400
        canvas = c.get(f"/i/{ASSIGNMENT}/export.csv", params={"format": "canvas", "column": "HW1 (123)"}).text
        assert canvas.splitlines()[:2] == ["Student,ID,SIS User ID,SIS Login ID,Section,HW1 (123)",
                                           "Points Possible,,,,,11"]
        assert c.get(f"/i/{ASSIGNMENT}/export.csv?format=moodle").text.startswith("Identifier,Full name,")
        before = srv.rows("SELECT count(*) FROM results")[0][0]
        attempts = srv.rows("SELECT count(*) FROM attempts")[0][0]
        r = c.post(f"/api/assignments/{ASSIGNMENT}/regrade")
        assert r.status_code == 202 and r.json() == {"queued": attempts}
    deadline = time.monotonic() + 400
    while srv.rows("SELECT count(*) FROM jobs WHERE state != 'done'")[0][0] and time.monotonic() < deadline:
        time.sleep(1)
    assert srv.rows("SELECT count(*) FROM results")[0][0] == before + attempts
    assert srv.rows(f"SELECT count(*) FROM results r JOIN jobs j ON j.id = r.job_id "
                    f"WHERE j.attempt_id = {graded_s1['id']}") == [(2,)]


def test_the_openapi_description_names_every_api_route(tmp_path):
    api = {p for p, _ in app_routes(tmp_path) if p.startswith("/api/")}
    assert api == set(SPEC["paths"])


def test_grade_submit_reads_the_token_from_the_environment_and_prints_the_feedback(srv, tmp_path):
    nb = tmp_path / "mine.ipynb"
    nb.write_bytes(notebook_bytes("correct", "s2-again"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NNGRADER_TOKEN": srv.tokens["s2"]}
    r = subprocess.run([sys.executable, "-m", "grader.cli", "submit", str(nb), "--server", srv.url],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "11/11" in r.stdout and f"feedback: {srv.url}/s/" in r.stdout
    r = subprocess.run([sys.executable, "-m", "grader.cli", "submit", str(nb), "--server", srv.url,
                        "--token", "x"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2 and "No such option '--token'" in r.stderr


def test_submit_in_a_notebook_hands_in_the_notebook_it_names(srv, tmp_path, monkeypatch, capsys):
    from grader import submit

    nb = tmp_path / "hw.ipynb"
    nb.write_bytes(notebook_bytes("scaled", "s6"))
    monkeypatch.setenv("NNGRADER_TOKEN", srv.tokens["s6"])
    monkeypatch.setenv("NNGRADER_SERVER", srv.url)
    monkeypatch.chdir(tmp_path)
    sub = submit()
    assert sub["status"] == "graded" and sub["score"] < 11
    assert f"submitted hw.ipynb: {sub['score']:g}/11; feedback: {srv.url}/s/" in capsys.readouterr().out


def test_a_cookie_session_posting_to_the_api_needs_the_csrf_header(srv):
    c, token = srv.browser_session("s4")
    files = {"file": ("hw.ipynb", b"not a notebook")}
    r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions", files=files)
    assert r.status_code == 400  # (the upload is read first: not a notebook)
    files = {"file": ("hw.ipynb", notebook_bytes("starter", "s4"))}
    r = c.post(f"/api/assignments/{ASSIGNMENT}/submissions", files=files)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert srv.rows("SELECT count(*) FROM attempts WHERE user_id = 's4'") == [(0,)]


def test_one_command_serves_with_the_example_roster_and_prints_each_link_once(tmp_path):
    from tests.service_support import free_port

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "grader.cli", "serve", "--assignment", ASSIGNMENT, "--roster",
           str(ROOT / "docs" / "service-roster.csv"), "--instructor", "ta", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        links = [proc.stdout.readline().rstrip("\n").split("\t") for _ in range(4)]
        assert [(who, name) for who, name, _ in links] == [("s1", "Ada Lovelace"), ("s2", "Alan Turing"),
                                                           ("s3", "Grace Hopper"), ("ta", "")]
        assert all(link.startswith(f"http://127.0.0.1:{port}/login#ngt_") for _, _, link in links)
        said = [proc.stderr.readline() for _ in range(3)]  # the note after each group of links, then this
        assert said[2].startswith(f"serving sigmoid-2-3-1 at http://127.0.0.1:{port}"), said
        import httpx

        token = links[0][2].split("#")[1]
        from tests.service_support import wait_for

        def up() -> bool:  # (the line comes just before uvicorn listens)
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30)
        me = httpx.get(f"http://127.0.0.1:{port}/api/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert (me["id"], me["role"]) == ("s1", "student")
    finally:
        proc.terminate()
        proc.wait(30)
    # started again on the same database: nobody new, so no link is printed again
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "serving sigmoid-2-3-1" in proc.stderr.readline()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert out == ""


def test_the_grading_worker_runs_at_a_lower_priority_than_the_server(srv):
    from tests.conftest import proc_stat
    from tests.service_support import worker_pids

    (worker,) = worker_pids(srv.db)
    nice = int(proc_stat(worker)[16])  # (field 19 of /proc/PID/stat)
    assert nice == min(19, int(proc_stat(srv.proc.pid)[16]) + 5)


def test_the_status_is_pushed_as_server_sent_events_until_done(srv):
    sub = srv.submit("s7", "correct")
    seen = []
    with srv.api("s7") as c, c.stream("GET", f"/api/submissions/{sub['id']}/events", timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                seen.append(json.loads(line[6:]))
    assert seen[0]["state"] in ("queued", "grading") and seen[-1]["state"] == "done"
    assert seen[-1]["message"] == "done: 11/11"
    assert all(a != b for a, b in zip(seen, seen[1:]))  # (an event only when something changed)
    with srv.api("s5") as c:  # another student's stream: 404, as every other route
        assert c.get(f"/api/submissions/{sub['id']}/events").status_code == 404


def test_a_replaced_token_ends_the_sessions_opened_with_it(srv):
    from grader.service import people

    c, _ = srv.browser_session("s8")
    assert c.get("/").status_code == 200
    store = Store(srv.db)
    srv.tokens["s8"] = people.issue(store, "s8").token  # (the link leaked: a new one)
    store.close()
    r = c.get("/")
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    c2, _ = srv.browser_session("s8")  # the new link logs in
    assert c2.get("/").status_code == 200
