"""The course's roster from the LMS by LTI Names and Role Provisioning Services 2.0: every
member of each course a launch came from, with their role and status, as service users
(`lti-PLATFORM-USER`, the same ids a launch gives), so the dashboard knows the students who
never opened the assignment and an inactive (dropped) member counts as dropped.
"""

from __future__ import annotations

import re
from typing import Any

from grader.service.lti_passback import Sender, SendError, _request
from grader.service.lti_tokens import service_role
from grader.service.store import User

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
MAX_PAGES = 200  # (a platform that pages forever stops here)


def sync(sender: Sender) -> list[str]:
    """Sync every known course's roster: one line per course saying what changed (or why not)."""
    lti, store, out = sender.lti, sender.service.store, []
    for platform_id, context_id, url, title in lti.rosters():
        platform = lti.platform(platform_id)
        if platform is None:
            continue
        try:
            members = _members(sender, platform, url)
        except SendError as e:
            out.append(f"{title or context_id}: not synced: {e}")
            continue
        added = changed = skipped = 0
        for m in members:
            role = service_role([str(r) for r in m.get("roles") or []])
            if role is None or not m.get("user_id"):
                skipped += 1
                continue
            uid = f"lti-{platform_id}-{m['user_id']}"[:200]
            name = m.get("name") or " ".join(filter(None, [m.get("given_name"), m.get("family_name")]))
            old = store.user(uid)
            user = User(uid, str(name or (old.name if old else m["user_id"]))[:200],
                        str(m.get("email") or (old.email if old else ""))[:200], "", role,
                        str(m.get("status") or "Active") == "Active")
            if store.put_user(user):
                added += 1
            elif old != user:
                changed += 1
        lti.roster_synced(platform_id, context_id)
        out.append(f"{title or context_id}: {len(members)} members, {added} new, {changed} changed, "
                   f"{skipped} without a role here")
    return out


def _members(sender: Sender, platform: Any, url: str) -> list[dict[str, Any]]:
    token = sender.token(platform, (NRPS_SCOPE,))
    members: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        answer, link = _request("GET", url, token, accept=MEMBERSHIPS, with_link=True)
        if not isinstance(answer, dict) or not isinstance(answer.get("members"), list):
            raise SendError(f"GET {url}: not a membership container")
        members += [m for m in answer["members"] if isinstance(m, dict)]
        nxt = re.search(r'<([^>]+)>\s*;\s*rel="?next"?', link or "")
        if nxt is None:
            break
        url = nxt[1]
    return members
