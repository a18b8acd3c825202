"""The HTML of the batch's pages (report.html, feedback): one style, a strict Content-Security-
Policy (no script, no load from anywhere), every cell escaped before it gets here."""

from __future__ import annotations

import html

from grader.inert import inert

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f2f2f2}td.n{text-align:right}
.pass{color:#1a7f37}.fail,.error,.timeout{color:#b42318}.missing{color:#8a6d00}
img{max-width:100%}code{background:#f5f5f5;padding:0 .2em}
"""
_CSP = ("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">")


def esc(text: object, limit: int = 2000) -> str:
    """Text made inert, then HTML-escaped for a page."""
    return html.escape(inert(text, limit), quote=True)


def page(title: str, body: list[str]) -> str:
    """A whole self-contained page around `body` (already escaped)."""
    return "\n".join(["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">", _CSP,
                      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
                      f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>", *body,
                      "</body></html>", ""])


def table(head: list[str], rows: list[list[str]], table_id: str, numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are already escaped."""
    out = [f"<table id=\"{table_id}\"><thead><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td class=\"n\">{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)
