"""Similar submissions: identical code (once comments, whitespace and outputs are gone) and
near-identical code, by winnowing fingerprints in the spirit of MOSS (Schleimer, Wilkerson and
Aiken, 2003): hashes of every k characters of the normalised code, the smallest of each window
kept, so a shared stretch of at least k + w - 1 characters always shares a fingerprint.

What the course's starter notebook holds is no one's similarity: its fingerprints are removed
from every submission's. A flag never changes a score; it is for a person to look at.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tokenize
from collections import defaultdict
from dataclasses import dataclass

K = 24  # characters per k-gram of normalised code (no spaces: about four tokens)
WINDOW = 8
NEAR = 0.9  # the share of fingerprints two submissions have in common to be flagged


def code_of(notebook: bytes) -> str:
    """A notebook's code with comments, whitespace, outputs and magics removed ("" if unreadable)."""
    try:
        nb = json.loads(notebook)
        cells = [c for c in nb.get("cells", []) if isinstance(c, dict) and c.get("cell_type") == "code"]
        sources = ["".join(c["source"]) if isinstance(c.get("source"), list) else str(c.get("source", ""))
                   for c in cells]
    except (ValueError, TypeError, AttributeError, KeyError):
        return ""
    return "".join(_strip(s) for s in sources)


def _strip(source: str) -> str:
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    text = "\n".join(lines) + "\n"
    try:
        toks = tokenize.generate_tokens(io.StringIO(text).readline)
        return "".join(t.string for t in toks if t.type not in (
            tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return re.sub(r"\s+", "", re.sub(r"#[^\n]*", "", text))


def fingerprints(code: str) -> set[int]:
    """The winnowed fingerprints of normalised code."""
    hashes = [int.from_bytes(hashlib.blake2b(code[i:i + K].encode(), digest_size=4).digest(), "big")
              for i in range(max(len(code) - K + 1, 0))]
    if len(hashes) <= WINDOW:
        return set(hashes)
    return {min(hashes[i:i + WINDOW]) for i in range(len(hashes) - WINDOW + 1)}


def encode(fps: set[int]) -> str:
    return " ".join(f"{h:08x}" for h in sorted(fps))


def decode(text: str | None) -> set[int]:
    return {int(h, 16) for h in (text or "").split()}


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest() if code else ""


@dataclass
class Pair:
    """Two students whose code is alike: identical, or near-identical with a score (0 to 1)."""

    a: str
    b: str
    kind: str  # identical | near
    score: float
    shared: int  # fingerprints in common (the starter's not counted)


def similar_pairs(subs: dict[str, tuple[str, set[int]]], starter: tuple[str, set[int]] | None = None,
                  threshold: float = NEAR) -> list[Pair]:
    """Every pair of students whose code is alike, most alike first. `subs`: student -> (code
    hash, fingerprints); `starter`: the starter notebook's, not counted."""
    start_hash, start_fps = starter or ("", set())
    out = _identical(subs, start_hash)
    same = {(p.a, p.b) for p in out}
    own = {s: fps - start_fps for s, (_, fps) in subs.items()}
    for (a, b), n in _shared(own).items():
        union = len(own[a] | own[b])
        score = n / union if union else 0.0
        if (a, b) not in same and score >= threshold:
            out.append(Pair(a, b, "near", round(score, 3), n))
    return sorted(out, key=lambda p: (-p.score, p.a, p.b))


def _identical(subs: dict[str, tuple[str, set[int]]], starter_hash: str) -> list[Pair]:
    """Every pair handing in the same normalised code (the starter's own excepted), however many."""
    groups: dict[str, list[str]] = defaultdict(list)
    for s in sorted(subs):
        if subs[s][0] and subs[s][0] != starter_hash:
            groups[subs[s][0]].append(s)
    return [Pair(a, b, "identical", 1.0, len(subs[a][1]))
            for group in groups.values() for i, a in enumerate(group) for b in group[i + 1:]]


def _shared(own: dict[str, set[int]]) -> dict[tuple[str, str], int]:
    """(a, b) -> how many fingerprints they share, a fingerprint that most of a big class has
    (boilerplate everyone writes) not counted: it is evidence of nothing."""
    index: dict[int, list[str]] = defaultdict(list)
    for s in sorted(own):
        for h in own[s]:
            index[h].append(s)
    common = max(50, len(own) // 10)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for students in index.values():
        if len(students) > common:
            continue
        for i, a in enumerate(students):
            for b in students[i + 1:]:
                shared[(a, b)] += 1
    return shared
