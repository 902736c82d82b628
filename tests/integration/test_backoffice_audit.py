"""The back-office audit log page: filters by admin, action, subject and time,
keyset pagination, the before/after diff, the CSV export, owner only."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from typing import Any

from api.admin_auth import accounts as admin_accounts
from api.admin_auth import audit
from api.backoffice.pages import PROGRAMME_TZ
from api.db.pool import transaction
from tests.conftest import ADMIN_PASSWORD, backoffice_session


async def _admin(pool: Any, clock: Any, email: str) -> Any:
    created = await transaction(
        pool,
        lambda conn: admin_accounts.create_admin(
            conn, email=email, role="marketing", password=ADMIN_PASSWORD, now=clock.now()
        ),
    )
    return created.principal


async def _record(
    pool: Any, admin: Any, action: str, subject: str, before: Any, after: Any, at: Any
) -> None:
    await transaction(
        pool, lambda conn: audit.record(conn, admin, action, subject, before, after, at)
    )


def _rows(html: str) -> int:
    return html.count('class="audit-entry"')


async def test_audit_log_filters_paginates_diffs_and_exports(
    http: Any, pool: Any, clock: Any
) -> None:
    owner = await backoffice_session(http, pool, clock, "owner")
    ann = await _admin(pool, clock, "ann-audit@example.com")
    bob = await _admin(pool, clock, "bob-audit@example.com")
    start = clock.now() + timedelta(days=1)
    for n in range(55):
        await _record(
            pool, ann, "test.bulk", f"thing:{n}", None, {"n": n}, start + timedelta(minutes=n)
        )
    await _record(
        pool,
        bob,
        "test.change",
        "thing:diff",
        {"name": "Old name", "budget_points": 100, "gone": True},
        {"name": "New name", "budget_points": 100, "added": "=1+1"},
        start + timedelta(hours=5),
    )

    # By action: 50 on the first page, a keyset link to the other 5.
    first = await http.get("/backoffice/audit", params={"action": "test.bulk"}, headers=owner)
    assert first.status_code == 200
    assert _rows(first.text) == 50 and "thing:54" in first.text and "thing:4<" not in first.text
    link = re.search(r'href="(/backoffice/audit\?[^"]*cursor=[^"]+)"', first.text)
    assert link is not None
    rest = await http.get(
        link.group(1).replace("&amp;", "&"), headers={**owner, "HX-Request": "true"}
    )
    assert rest.status_code == 200 and _rows(rest.text) == 5
    assert "thing:4<" in rest.text and "thing:5<" not in rest.text and "<h1>" not in rest.text
    assert "Next page" not in rest.text

    # By admin.
    by_bob = await http.get("/backoffice/audit", params={"admin_id": bob.admin_id}, headers=owner)
    assert _rows(by_bob.text) == 1 and "bob-audit@example.com" in by_bob.text
    # The diff: changed, removed and added fields marked; the unchanged one plain.
    assert re.search(
        r'class="diff-changed"><th scope="row">name</th><td><del>Old name</del></td><td><ins>New name</ins>',
        by_bob.text,
    )
    assert 'class="diff-removed"><th scope="row">gone</th>' in by_bob.text
    assert 'class="diff-added"><th scope="row">added</th>' in by_bob.text
    assert 'class="diff-same"><th scope="row">budget_points</th>' in by_bob.text

    # By time (typed in Amsterdam time): the 10 minutes from n=20, until exclusive.
    since = (start + timedelta(minutes=20)).astimezone(PROGRAMME_TZ).strftime("%Y-%m-%dT%H:%M")
    until = (start + timedelta(minutes=30)).astimezone(PROGRAMME_TZ).strftime("%Y-%m-%dT%H:%M")
    window = await http.get(
        "/backoffice/audit",
        params={"action": "test.bulk", "since": since, "until": until},
        headers=owner,
    )
    assert (
        _rows(window.text) == 10 and "thing:20<" in window.text and "thing:30<" not in window.text
    )
    # By subject.
    one = await http.get("/backoffice/audit", params={"subject": "thing:7"}, headers=owner)
    assert _rows(one.text) == 1

    # Bad filters: a clear message and a 400, not a 500.
    bad = await http.get("/backoffice/audit", params={"since": "yesterday"}, headers=owner)
    assert bad.status_code == 400 and "is not a date and time" in bad.text
    backwards = await http.get(
        "/backoffice/audit", params={"since": until, "until": since}, headers=owner
    )
    assert backwards.status_code == 400 and "Since must be before until" in backwards.text

    # CSV: the filtered rows, newest first, formulas defused.
    exported = await http.get(
        "/backoffice/audit/export.csv", params={"admin_id": bob.admin_id}, headers=owner
    )
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == [
        "id",
        "at",
        "admin_id",
        "admin_email",
        "admin_role",
        "action",
        "subject",
        "before",
        "after",
    ]
    assert len(rows) == 2
    assert rows[1][3:7] == ["bob-audit@example.com", "marketing", "test.change", "thing:diff"]
    assert '"added": "=1+1"' in rows[1][8]
    bulk = await http.get(
        "/backoffice/audit/export.csv", params={"action": "test.bulk"}, headers=owner
    )
    bulk_rows = list(csv.reader(io.StringIO(bulk.text)))[1:]
    assert [r[6] for r in bulk_rows] == [f"thing:{n}" for n in range(54, -1, -1)]

    # Owner only, as the admin API.
    finance = await backoffice_session(http, pool, clock, "finance")
    assert (await http.get("/backoffice/audit", headers=finance)).status_code == 403
