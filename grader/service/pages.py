"""The service's own pages (login, upload, status, history, gradebook): HTML with every value
escaped (grader.batch.pages.esc) and no inline script; the one script is /static/app.js.

The feedback page and the class dashboard are the batch's own pages (grader.batch.reports,
grader.batch.classreport), served as they are: they carry no script at all.
"""

from __future__ import annotations

import html

from grader.batch.pages import esc, table
from grader.course.late import show_time
from grader.render.common import pts
from grader.service.store import Attempt, User

# Our pages: a script only from this server, no inline script, forms only to this server.
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
       "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
# The batch's pages (feedback, dashboard): no script at all.
CSP_STATIC = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
              "frame-ancestors 'none'; base-uri 'none'")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f2f2f2}nav{margin-bottom:1em}nav a,nav form{margin-right:1em;display:inline}
#drop{border:2px dashed #888;padding:2em;text-align:center;margin:1em 0}#drop.over{background:#eef}
.error{color:#b42318}.state{font-size:1.3em;margin:1em 0}.graded{color:#1a7f37}
"""


def page(title: str, body: list[str], user: User | None = None, csrf: str = "") -> str:
    """One of the service's pages, around `body` (already escaped)."""
    nav = ""
    if user is not None:
        links = ["<a href=\"/\">Home</a>"]
        if user.role == "student":
            links.append("<a href=\"/history\">History</a>")
        links.append(f"<form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" "
                     f"value=\"{esc(csrf)}\"><button>Log out {esc(user.id)}</button></form>")
        nav = "<nav>" + "".join(links) + "</nav>"
    return "\n".join(["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
                      f"<title>{esc(title)}</title><style>{_STYLE}</style>",
                      "<script src=\"/static/app.js\" defer></script></head><body>", nav, *body,
                      "</body></html>", ""])


def message(title: str, text: str, user: User | None = None, csrf: str = "") -> str:
    """A page saying one thing (an error, mostly)."""
    return page(title, [f"<h1>{esc(title)}</h1>", f"<p class=\"error\" id=\"message\">{esc(text)}</p>",
                        "<p><a href=\"/\">Back</a></p>"], user, csrf)


def login(pre: str, error: str = "") -> str:
    """The login form: paste the access token (a personal link fills it in)."""
    body = ["<h1>Log in</h1>"]
    if error:
        body.append(f"<p class=\"error\" id=\"message\">{esc(error)}</p>")
    body.append("<form method=\"post\" action=\"/login\"><label>Access token "
                "<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" size=\"50\"></label>"
                f"<input type=\"hidden\" name=\"csrf\" value=\"{esc(pre)}\"><button>Log in</button></form>")
    return page("Log in", body)


def attempt_state(a: Attempt, position: int | None) -> str:
    """An attempt's state in words: queued at position k, grading, or its score."""
    if a.state == "queued":
        return f"queued at position {position or '?'}"
    if a.state == "grading":
        return "grading"
    if a.status == "graded":
        return f"done: {pts(a.score or 0)}/{pts(a.max_score or 0)}"
    return f"done: {a.status} ({a.reason[:200]})"


def attempts_table(attempts: list[Attempt], counted: set[int], table_id: str = "attempts") -> str:
    """A user's attempts: when, which file, state and score, and which one counts."""
    rows = []
    for n, a in enumerate(attempts, 1):
        score = f"{pts(a.score)}/{pts(a.max_score or 0)}" if a.score is not None else ""
        rows.append([f"<a href=\"/s/{a.id}\">#{n}</a>", esc(a.assignment), esc(show_time(a.submitted_at)),
                     esc(a.filename, 200), esc(a.status or a.state), score, "counts" if a.id in counted else ""])
    return table(["Attempt", "Assignment", "Submitted", "File", "State", "Score", ""], rows, table_id)


def upload(assignment: str, policy_lines: list[str], csrf: str, attempts: list[Attempt], counted: int | None,
           user: User) -> str:
    """The upload page of one assignment: its policy, the form (and its drop zone), the history."""
    body = [f"<h1>Hand in {esc(assignment)}</h1>", "<ul>" + "".join(f"<li>{esc(x)}</li>" for x in policy_lines)
            + "</ul>",
            f"<form id=\"upload\" method=\"post\" action=\"/a/{esc(assignment)}/submit\" "
            "enctype=\"multipart/form-data\">"
            f"<input type=\"hidden\" name=\"csrf\" value=\"{esc(csrf)}\">"
            "<div id=\"drop\">Drop your notebook here, or <input id=\"file\" type=\"file\" name=\"file\" "
            "accept=\".ipynb\"> <span id=\"picked\"></span></div><button id=\"submit\">Submit</button></form>",
            "<h2>Your attempts</h2>", attempts_table(attempts, {counted} if counted else set()) if attempts else "<p>None yet.</p>"]
    return page(f"Hand in {assignment}", body, user, csrf)


def status(a: Attempt, position: int | None, user: User, csrf: str) -> str:
    """The live status of one attempt (polled by the script; the feedback page once done)."""
    words = attempt_state(a, position)
    body = [f"<h1>Attempt at {esc(a.assignment)}</h1>",
            f"<p>{esc(a.filename, 200)}, submitted {esc(show_time(a.submitted_at))}.</p>",
            f"<p id=\"state\" class=\"state {esc(a.state)}\" data-poll=\"/api/submissions/{a.id}\">{esc(words)}</p>"]
    if a.state == "done":
        body.append(f"<p><a id=\"feedback\" href=\"/s/{a.id}/feedback\">Feedback</a></p>")
    return page("Status", body, user, csrf)


def home(user: User, assignments: list[str], csrf: str) -> str:
    """A student's list of assignments, or an instructor's list of dashboards."""
    if user.role == "instructor":
        items = [f"<li>{esc(a)}: <a href=\"/i/{esc(a)}/\">dashboard</a>, <a href=\"/i/{esc(a)}/gradebook\">"
                 f"gradebook</a>, <a href=\"/i/{esc(a)}/export.csv\">grades.csv</a></li>" for a in assignments]
    else:
        items = [f"<li><a href=\"/a/{esc(a)}\">{esc(a)}</a></li>" for a in assignments]
    who = f"{user.name} ({user.id})" if user.name else user.id
    return page("nngrader", [f"<h1>Hello {esc(who)}</h1>", "<ul id=\"assignments\">" + "".join(items) + "</ul>"],
                user, csrf)


def gradebook(assignment: str, users: list[User], attempts: dict[str, list[Attempt]],
              counted: dict[str, int | None], user: User, csrf: str) -> str:
    """The instructor's gradebook: each student's attempts and the one that counts."""
    rows = []
    for u in users:
        mine = attempts.get(u.id, [])
        cells = []
        for n, a in enumerate(mine, 1):
            score = pts(a.score) if a.score is not None else a.state
            mark = "*" if a.id == counted.get(u.id) else ""
            cells.append(f"<a href=\"/s/{a.id}\">#{n}: {esc(score)}{mark}</a>")
        rows.append([esc(u.id), esc(u.name), str(len(mine)), " ".join(cells) or "none"])
    body = [f"<h1>Gradebook: {esc(assignment)}</h1>", "<p>* the attempt that counts.</p>",
            table(["Student", "Name", "Attempts", "Scores"], rows, "gradebook", {2}),
            f"<form method=\"post\" action=\"/i/{esc(assignment)}/regrade\"><input type=\"hidden\" name=\"csrf\" "
            f"value=\"{esc(csrf)}\"><button id=\"regrade\">Grade every attempt again (the spec changed)</button>"
            "</form>"]
    return page(f"Gradebook: {assignment}", body, user, csrf)


def with_nav(page_html: str, links: list[tuple[str, str]]) -> str:
    """A batch page (feedback, dashboard) with links back into the service at its top."""
    nav = "<nav>" + " · ".join(f"<a href=\"{html.escape(h)}\">{html.escape(t)}</a>" for h, t in links) + "</nav>"
    return page_html.replace("<body>", "<body>" + nav, 1)
