"""Making text that came from a notebook inert, whatever format it lands in.

Messages, names and values in a report can hold text the notebook chose (an exception's
message, a dict key, a file name). Rendered as is, such text could forge lines of the
report (a newline, then `PASS ...`), drive a terminal (ANSI escapes), reorder what is shown
(bidirectional overrides), open an HTML tag or comment where the report is shown as markdown,
or reach a CI runner as a workflow command (`::error::`). Every
renderer passes each string through here first.
"""

from __future__ import annotations

import re

# Terminal escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), and other ESC pairs.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
# C0 and C1 controls, DEL, bidirectional controls, line/paragraph separators, zero-width and BOM.
# (and lone surrogates and the two non-characters XML forbids, so every format can encode it)
_CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffb"
    "\ud800-\udfff\ufffe\uffff]"
)
_SPACES = re.compile(r"[ \t\n\r\f\v\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
# CI runners read these as commands wherever a line starts with them (after leading blanks).
_WORKFLOW = re.compile(r"::|##\[")
# Where text is shown as markdown (a CI job summary), a tag or comment could hide what follows.
_MARKUP = re.compile(r"<(?=[A-Za-z!/?])|(?<=--)>")


def inert(text: object, limit: int = 2000) -> str:
    """One line of plain text: escapes and controls removed, blanks folded, workflow commands broken."""
    s = str(text)
    if len(s) > 4 * limit:  # bound the work before the regexes
        s = s[: 4 * limit]
    s = _ESCAPES.sub("", s)
    s = _SPACES.sub(" ", s)
    s = _CONTROLS.sub("", s)
    s = _WORKFLOW.sub(lambda m: ": :" if m.group() == "::" else "# #[", s)
    s = _MARKUP.sub(lambda m: "‹" if m.group() == "<" else "›", s)
    s = s.strip()
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "…"
    return s


def inert_block(text: object, limit: int = 20000) -> str:
    """Several lines (a traceback for maintainers): each line made inert, line breaks kept."""
    lines = str(text)[: 2 * limit].splitlines()
    return "\n".join(inert(line, limit) for line in lines)[:limit]


# Only what would change how markdown renders is escaped (CommonMark/GFM: a backslash before
# ASCII punctuation makes it literal), so a feedback file stays readable as plain text: emphasis,
# code, links and images, HTML and entities, table cells, strikethrough, "#" (a forged heading
# stays visibly escaped even mid-line); a line-start block
# marker (heading, list, quote, rule); and autolinks (a scheme's "://", "www.").
_MD_INLINE = re.compile(r"[\\`*#\[\]<>|~&]|(?<=\])\(|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")  # (dL_dW2 stays)
_MD_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))")
_MD_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto)(:)|\b(www)(\.)")


def md(text: object, limit: int = 2000) -> str:
    """Inert text made literal in markdown (a table cell included): no markup, links, HTML or `|`."""
    s = _MD_INLINE.sub(lambda m: "\\" + m[0], inert(text, limit))
    s = _MD_AUTOLINK.sub(lambda m: f"{m[1]}\\:" if m[1] else f"{m[3]}\\.", s)
    return _MD_START.sub(lambda m: m[1] + ("\\" + m[2] if not m[2].isdigit() else m[2] + "\\"), s)
