"""Retention, stickiness, contribution and per-manager reports through HTTP, on small datasets whose tier history,
logins, balances and contacts are set at known moments, so every count is known."""

from datetime import date, datetime, timedelta

from sqlalchemy import text

from tests.managers.helpers import add_manager, run
from tests.reports.test_reports import report
from tests.tiering.test_assignment import make_customer

DAY = "2025-12-01T00:00:00Z"


async def _ids(session, *external_ids: str) -> dict[str, int]:
    rows = await session.execute(
        text("SELECT external_id, id FROM customer WHERE external_id = ANY(:ids)"), {"ids": list(external_ids)}
    )
    return dict(rows.all())


async def _history(session, moves: list[tuple[str, str | None, str, str, str]]) -> None:
    """Replace the customers' tier history under the wealth policy with `moves`: (customer, from, to, direction,
    at), made by the active version."""
    ids = await _ids(session, *{m[0] for m in moves})
    policy_id, version_id = (
        await session.execute(
            text(
                "SELECT p.id, v.id FROM tier_policy p JOIN tier_policy_version v ON v.policy_id = p.id "
                "AND v.status = 'active' WHERE p.key = 'wealth'"
            )
        )
    ).one()
    await session.execute(
        text("DELETE FROM tier_transition WHERE customer_id = ANY(:ids)"), {"ids": list(ids.values())}
    )
    for customer, from_code, to_code, direction, at in moves:
        await session.execute(
            text(
                "INSERT INTO tier_transition (customer_id, policy_id, version_id, from_code, to_code, direction, "
                "reason, at) VALUES (:c, :p, :v, :f, :t, :d, 'run', :at)"
            ),
            {
                "c": ids[customer],
                "p": policy_id,
                "v": version_id,
                "f": from_code,
                "t": to_code,
                "d": direction,
                "at": datetime.fromisoformat(at),
            },
        )


HISTORY = [
    ("A", None, "gold", "initial", DAY),  # stays gold: retained
    ("B", None, "gold", "initial", DAY),
    ("B", "gold", "wealth", "upgrade", "2026-01-15T00:00:00Z"),  # retained, upgraded
    ("C", None, "gold", "initial", DAY),
    ("C", "gold", "mass", "downgrade", "2026-01-20T00:00:00Z"),  # downgraded: not retained
    ("D", None, "wealth", "initial", DAY),  # erased in the period: lost
    ("E", None, "gold", "initial", "2026-01-05T00:00:00Z"),  # not a customer of any tier at the start
    ("F", None, "wealth", "initial", DAY),
    ("F", "wealth", "gold", "downgrade", "2026-01-10T00:00:00Z"),
    ("F", "gold", "wealth", "upgrade", "2026-01-25T00:00:00Z"),  # back by the end: retained
    ("G", None, "wealth", "initial", DAY),
    ("G", "wealth", "gold", "downgrade", "2026-02-03T00:00:00Z"),  # after the end: retained
]


async def test_retention_per_tier_from_the_tier_history(client, as_role, wealth, session):
    for customer in "ABCDEFG":
        await make_customer(client, as_role, customer, "1000.00")
    await _history(session, HISTORY)
    await session.execute(
        text("UPDATE customer SET erased_at = '2026-01-10T00:00:00Z' WHERE external_id = 'D'"),
    )
    body = await report(client, as_role, "retention", policy_key="wealth", **{"from": "2026-01-01", "to": "2026-01-31"})
    tiers = {t["tier"]: t for t in body["tiers"]}
    assert [t["tier"] for t in body["tiers"]] == ["wealth", "gold"]
    assert {k: tiers["gold"][k] for k in ("customers", "retained", "upgraded", "downgraded", "lost")} == {
        "customers": 3,
        "retained": 2,
        "upgraded": 1,
        "downgraded": 1,
        "lost": 0,
    }
    assert {k: tiers["wealth"][k] for k in ("customers", "retained", "upgraded", "downgraded", "lost")} == {
        "customers": 3,
        "retained": 2,
        "upgraded": 0,
        "downgraded": 0,
        "lost": 1,
    }
    assert tiers["gold"]["retention"]["rate"] == round(2 / 3, 4) and tiers["wealth"]["label"] == "Wealth"
    assert (body["customers"], body["retained"]) == (6, 4)
    # a later period: G's downgrade now falls inside it
    later = await report(
        client, as_role, "retention", policy_key="wealth", **{"from": "2026-02-01", "to": "2026-02-28"}
    )
    wealth_later = next(t for t in later["tiers"] if t["tier"] == "wealth")
    assert (wealth_later["customers"], wealth_later["retained"], wealth_later["downgraded"]) == (4, 2, 1)  # B, D, F, G


async def test_stickiness_counts_customers_with_a_login_in_30_days(client, as_role, wealth, session):
    for customer, balance in (("S1", "60000.00"), ("S2", "60000.00"), ("S3", "60000.00"), ("S4", "1000.00")):
        await make_customer(client, as_role, customer, balance)
    ids = await _ids(session, "S1", "S2", "S3", "S4")
    today = date.today()
    for customer, days_ago, logins in (("S1", 3, 2), ("S2", 29, 1), ("S3", 30, 4), ("S4", 0, 1)):
        await session.execute(
            text("INSERT INTO customer_activity_daily (customer_id, day, logins) VALUES (:c, :d, :n)"),
            {"c": ids[customer], "d": today - timedelta(days=days_ago), "n": logins},
        )
    body = await report(client, as_role, "stickiness", policy_key="wealth")
    tiers = {t["tier"]: (t["customers"], t["active_30d"], t["stickiness"]) for t in body["tiers"]}
    assert tiers == {"gold": (3, 2, 0.6667), "mass": (1, 1, 1.0)}  # S3's login is 30 days ago: outside
    assert (body["customers"], body["active_30d"], body["on"]) == (4, 3, today.isoformat())
    # the window ends on `to`: 20 days ago only S2's (29 days ago) and S3's (30) logins are in it
    earlier = await report(
        client, as_role, "stickiness", policy_key="wealth", to=(today - timedelta(days=20)).isoformat()
    )
    assert earlier["active_30d"] == 2


async def test_contribution_from_margins_or_the_banks_figure_and_its_monthly_trend(client, as_role, wealth, session):
    response = await client.put(
        "/v1/contribution-margins/savings_account",
        headers=as_role("admin"),
        json={"margin_rate": "0.012", "monthly_fee": "1.50"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["margin_rate"] == "0.012000"
    for customer, balance in (("V1", "60000.00"), ("V2", "120000.00"), ("V3", "1000.00")):
        await make_customer(client, as_role, customer, balance)
    ids = await _ids(session, "V1", "V2", "V3")
    await session.execute(
        text("""UPDATE customer SET attributes = '{"bank_contribution_monthly": 99.5}' WHERE external_id = 'V2'"""),
    )
    for customer, month_end, balance in (
        ("V1", "2026-10-31", 30000),
        ("V1", "2026-11-30", 40000),
        ("V3", "2026-11-15", 0),
    ):
        await session.execute(
            text(
                "INSERT INTO holding_balance (customer_id, product_code, as_of, balance) "
                "VALUES (:c, 'savings_account', :d, :b)"
            ),
            {"c": ids[customer], "d": date.fromisoformat(month_end), "b": balance},
        )
    body = await report(
        client, as_role, "contribution", policy_key="wealth", **{"from": "2026-10-01", "to": "2026-11-30"}
    )
    tiers = {t["tier"]: t for t in body["tiers"]}
    # V1: 60000 x 0.012 / 12 + 1.50 = 61.50; V2: the bank's 99.50; V3: 1000 x 0.012 / 12 + 1.50 = 2.50
    assert (tiers["gold"]["customers"], tiers["gold"]["contribution_monthly"]) == (2, "161.00")
    assert tiers["gold"]["per_customer"] == "80.50"
    assert tiers["mass"]["contribution_monthly"] == "2.50" and body["contribution_monthly"] == "163.50"
    # October: V1 30000 -> 31.50; November: V1 40000 -> 41.50 and V3 0 -> 1.50 (the fee)
    assert [(m["month"], m["contribution"]) for m in body["trend"]] == [
        ("2026-10-01", "31.50"),
        ("2026-11-01", "43.00"),
    ]
    november = {t["tier"]: t["contribution"] for t in body["trend"][1]["tiers"]}
    assert november == {"gold": "41.50", "mass": "1.50"}
    features = await session.execute(
        text("SELECT contribution_monthly FROM customer_features WHERE customer_id = :c"), {"c": ids["V2"]}
    )
    assert str(features.scalar_one()) == "99.50"


async def test_margins_are_validated_and_listed(client, as_role, wealth):
    admin = as_role("admin")
    assert (
        await client.put("/v1/contribution-margins/nope", headers=admin, json={"margin_rate": "0.01"})
    ).status_code == 404
    bad = await client.put("/v1/contribution-margins/savings_account", headers=admin, json={"margin_rate": "1.5"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/margin_rate"
    await client.put("/v1/contribution-margins/savings_account", headers=admin, json={"margin_rate": "-0.002"})
    listed = await client.get("/v1/contribution-margins", headers=as_role("admin"))
    assert [(m["product_code"], m["margin_rate"], m["monthly_fee"]) for m in listed.json()["items"]] == [
        ("savings_account", "-0.002000", "0.00")
    ]


async def test_manager_report_contacts_tasks_retention_migration_stickiness_and_contribution(
    client, as_role, wealth, session
):
    for customer in ("M1", "M2", "M3"):
        await make_customer(client, as_role, customer, "60000.00")  # gold
    await add_manager(client, as_role, "RM1", "gold", capacity=5)
    await add_manager(client, as_role, "RM2", "gold", capacity=2, team="wealth-west")
    await run(client, as_role)
    ids = await _ids(session, "M1", "M2", "M3")
    await session.execute(text("UPDATE manager_assignment_change SET at = '2026-01-01T00:00:00Z'"))
    portfolio = dict(
        (
            await session.execute(
                text(
                    "SELECT m.manager_id, count(*) FROM manager_assignment a JOIN relationship_manager m "
                    "ON m.id = a.manager_id GROUP BY 1"
                )
            )
        ).all()
    )
    assert portfolio == {"RM1": 2, "RM2": 1}  # filled evenly by capacity: 2/5 and 1/2
    owner = dict(
        (
            await session.execute(
                text(
                    "SELECT c.external_id, m.manager_id FROM manager_assignment a "
                    "JOIN customer c ON c.id = a.customer_id "
                    "JOIN relationship_manager m ON m.id = a.manager_id"
                )
            )
        ).all()
    )
    rm1 = sorted(c for c, m in owner.items() if m == "RM1")
    rm2 = [c for c, m in owner.items() if m == "RM2"]
    await _history(
        session,
        [
            (rm1[0], None, "gold", "initial", DAY),
            (rm1[0], "gold", "wealth", "upgrade", "2026-01-10T00:00:00Z"),
            (rm1[1], None, "gold", "initial", DAY),
            (rm1[1], "gold", "mass", "downgrade", "2026-01-12T00:00:00Z"),
            (rm1[1], "mass", "gold", "upgrade", "2026-01-14T00:00:00Z"),
            (rm2[0], None, "gold", "initial", DAY),
            (rm2[0], "gold", "mass", "downgrade", "2026-01-20T00:00:00Z"),
        ],
    )
    for customer, at in (
        (rm1[0], "2026-01-05T10:00:00Z"),
        (rm1[1], "2026-01-06T10:00:00Z"),
        (rm1[1], "2026-02-06T10:00:00Z"),
    ):
        response = await client.post(
            f"/v1/customers/{customer}/contacts",
            headers=as_role("admin"),
            json={"kind": "call", "channel": "phone", "outcome": "reached", "contacted_at": at},
        )
        assert response.status_code == 201, response.text
    for customer, due, closed, state in (
        (rm1[0], "2026-01-10", "2026-01-09T12:00:00Z", "done"),  # on time
        (rm1[1], "2026-01-10", "2026-01-12T12:00:00Z", "done"),  # late
        (rm1[1], "2026-01-11", "2026-01-11T12:00:00Z", "dismissed"),  # not done
    ):
        await session.execute(
            text(
                "INSERT INTO manager_task (customer_id, kind, period, reason, due_on, state, closed_at) "
                "VALUES (:c, 'cadence_overdue', :p, 'test', :d, :s, :at)"
            ),
            {
                "c": ids[customer],
                "p": due,
                "d": date.fromisoformat(due),
                "s": state,
                "at": datetime.fromisoformat(closed),
            },
        )
    # logins: the window is the 30 days ending on `to`'s day, 2026-01-31: (2026-01-01, 2026-01-31]
    for customer, day, logins in (
        (rm1[0], "2026-01-31", 1),  # in (the last day)
        (rm1[1], "2026-01-01", 3),  # out: 30 days before
        (rm1[1], "2026-02-01", 1),  # out: after `to`
        (rm1[1], "2026-01-20", 0),  # a day rolled up without a login
        (rm2[0], "2026-01-02", 2),  # in (the first day)
    ):
        await session.execute(
            text("INSERT INTO customer_activity_daily (customer_id, day, logins) VALUES (:c, :d, :n)"),
            {"c": ids[customer], "d": date.fromisoformat(day), "n": logins},
        )
    # contribution: 60000 x 0.012 / 12 + 1.50 = 61.50 each, but the bank's own figure for rm1[1]
    margin = await client.put(
        "/v1/contribution-margins/savings_account",
        headers=as_role("admin"),
        json={"margin_rate": "0.012", "monthly_fee": "1.50"},
    )
    assert margin.status_code == 200, margin.text
    await session.execute(
        text("""UPDATE customer SET attributes = '{"bank_contribution_monthly": 99.5}' WHERE external_id = :c"""),
        {"c": rm1[1]},
    )
    body = await report(
        client, as_role, "relationship-managers", policy_key="wealth", **{"from": "2026-01-02", "to": "2026-01-31"}
    )
    managers = {m["manager_id"]: m for m in body["items"]}
    one, two = managers["RM1"], managers["RM2"]
    assert (one["portfolio"], one["contacts"], one["tasks_done"], one["tasks_done_on_time"]) == (2, 2, 2, 1)
    assert one["on_time"]["rate"] == 0.5
    assert (one["portfolio_retention"]["customers"], one["portfolio_retention"]["retained"]) == (2, 2)
    assert (one["upgrades"], one["downgrades"], one["net_migration"]) == (2, 1, 1)
    assert (two["portfolio"], two["contacts"], two["tasks_done"]) == (1, 0, 0)
    assert (two["portfolio_retention"]["retained"], two["portfolio_retention"]["downgraded"]) == (0, 1)
    assert two["net_migration"] == -1
    assert one["portfolio_stickiness"] == {"customers": 2, "active_30d": 1, "stickiness": 0.5}
    assert two["portfolio_stickiness"] == {"customers": 1, "active_30d": 1, "stickiness": 1.0}
    assert one["portfolio_contribution"] == {"customers": 2, "contribution_monthly": "161.00", "per_customer": "80.50"}
    assert two["portfolio_contribution"] == {"customers": 1, "contribution_monthly": "61.50", "per_customer": "61.50"}
    # filters and pages: a team; one manager a page
    west = await report(client, as_role, "relationship-managers", team="wealth-west", **{"from": "2026-01-02"})
    assert [m["manager_id"] for m in west["items"]] == ["RM2"]
    first = await report(client, as_role, "relationship-managers", limit=1, **{"from": "2026-01-02"})
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = await report(client, as_role, "relationship-managers", limit=1, cursor=first["next_cursor"])
    assert [m["manager_id"] for m in first["items"] + second["items"]] == ["RM1", "RM2"]
    # a manager without customers: no share, no mean
    await add_manager(client, as_role, "RM3", "gold", capacity=1, team="wealth-north")
    (empty,) = (await report(client, as_role, "relationship-managers", team="wealth-north"))["items"]
    assert empty["portfolio_stickiness"] == {"customers": 0, "active_30d": 0, "stickiness": None}
    assert empty["portfolio_contribution"] == {"customers": 0, "contribution_monthly": "0.00", "per_customer": None}


async def test_reports_name_an_unknown_policy(client, as_role, wealth):
    for path in ("retention", "stickiness", "contribution", "relationship-managers"):
        response = await client.get(f"/v1/reports/{path}", params={"policy_key": "nope"}, headers=as_role("admin"))
        assert response.status_code == 404, (path, response.text)
