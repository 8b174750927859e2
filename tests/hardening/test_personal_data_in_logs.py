"""No log line carries a value from a request: personal data (a name, an email, a phone number, a birth date, a
balance, free text, the customer's id) is sent through every write route, with good values and with values the
app or the database refuses, and every line written at every level is searched for it.

Twice: in process (every logger, the production JSON formatter) and against `tierwise serve` (uvicorn with the
production logging configuration at DEBUG, its whole stderr). The list of write routes is read from the app's
OpenAPI document: a new write route fails this test until it is exercised here.
"""

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import httpx

from app.core.config import Settings
from app.core.logging import JsonFormatter
from app.main import create_app
from tests.hardening.live_server import live_server

NAME, EMAIL, PHONE, BIRTH = "Zelda Quuxington", "zelda.quux@example.org", "+44 7700 900123", "1971-02-03"
BALANCE, CUSTOMER = "98765.43", "ZQX-48151623"
FREE_TEXT = f"{NAME} ({EMAIL}, {PHONE}) says the adviser at 12 Quux Lane was rude"
NUL = "\u0000"  # a character Postgres refuses in text and JSON: the request reaches the database and fails there
# What must never appear, however a value is rendered (repr of a date or a Decimal, JSON escapes, lower case).
TRACES = ["quuxington", "zelda.quux", "900123", "1971", "98765", "48151623", "quux lane"]
WRITE_METHODS = {"post", "put", "patch", "delete"}
CLIENT_LOGGERS = ("httpx", "httpcore")  # this test's own HTTP client, which logs the URLs it calls

Send = Callable[..., Awaitable[httpx.Response]]


def write_operations() -> set[str]:
    spec = create_app(Settings(environment="test")).openapi()
    return {
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if method in WRITE_METHODS
    }


# A trace id is 32 random hex digits (ours) or the caller's W3C trace id: digits in it are no value of the request,
# and any 4 to 8 of them may happen to spell one of the digit TRACES below.
TRACE_ID_FIELD = re.compile(r'"trace_id": "[0-9a-f]{32}"')


def leaks(text: str) -> list[str]:
    lowered = TRACE_ID_FIELD.sub("", text.lower())
    return [trace for trace in TRACES if trace in lowered]


async def exercise_every_write_route(request: Callable[..., Awaitable[httpx.Response]]) -> set[str]:
    """Each write route with personal data, good (2xx expected) and bad (4xx expected); returns the operations
    exercised ("PUT /v1/customers/{customer_id}", ...)."""
    done: set[str] = set()
    today = date.today().isoformat()
    now = datetime.now(UTC).replace(microsecond=0)

    async def send(operation: str, path: str, expect: str, **kwargs) -> httpx.Response:
        method = operation.split()[0]
        headers = {"X-Request-ID": EMAIL, **kwargs.pop("headers", {})}  # a request id that is personal data
        response = await request(method, path, headers=headers, **kwargs)
        assert response.status_code < 500, (operation, response.text)
        ok = 200 <= response.status_code < 300
        if ok and expect == "bad" and "/import" in path:  # an import refuses bad lines one by one, in a 200
            ok = response.json().get("accepted") != 0 or not response.json().get("rejected")
        assert ok if expect == "good" else not ok, (operation, expect, response.status_code, response.text)
        done.add(operation)
        return response

    async def both(operation: str, path: str, good: dict, bad: dict) -> httpx.Response:
        await send(operation, path, "bad", **bad)
        return await send(operation, path, "good", **good)

    customer = f"/v1/customers/{CUSTOMER}"
    for name in ("email", "phone"):
        await both(
            "PUT /v1/attributes/custom/{name}",
            f"/v1/attributes/custom/{name}",
            good={"json": {"type": "string", "description": f"e.g. {EMAIL} or {PHONE}"}},
            bad={"json": {"type": "string", "description": f"{NAME}{NUL}"}},
        )
    await both(
        "POST /v1/products",
        "/v1/products",
        good={
            "json": {
                "product_code": "savings",
                "name": "Savings",
                "category": "deposit",
                "risk_level": 1,
                "channels": ["mobile"],
                "description": f"made for {NAME}",
            }
        },
        bad={
            "json": {
                "product_code": "savings",
                "name": f"{NAME}{NUL}",
                "category": "deposit",
                "risk_level": 1,
                "channels": ["mobile"],
            }
        },
    )
    await send(
        "POST /v1/products",
        "/v1/products",
        "good",
        json={"product_code": "card", "name": "Card", "category": "card", "risk_level": 1, "channels": ["mobile"]},
    )
    await both(
        "PATCH /v1/products/{product_code}",
        "/v1/products/savings",
        good={"json": {"description": f"ask {PHONE}"}},
        bad={"json": {"description": f"{EMAIL}{NUL}"}},
    )
    await both(
        "PUT /v1/contribution-margins/{product_code}",
        "/v1/contribution-margins/savings",
        good={"json": {"margin_rate": "0.012", "monthly_fee": "1.00"}},
        bad={"json": {"margin_rate": PHONE}},
    )
    profile = {
        "segment": "retail",
        "display_name": NAME,
        "birth_date": BIRTH,
        "onboarded_at": "2015-03-01T10:00:00Z",
        "risk_level": 3,
        "risk_assessed_at": now.isoformat(),
        "marketing_consent": True,
        "attributes": {"email": EMAIL, "phone": PHONE},
    }
    await send(
        "PUT /v1/customers/{customer_id}", customer, "bad", json={**profile, "attributes": {"email": EMAIL + NUL}}
    )
    await both(
        "PUT /v1/customers/{customer_id}",
        customer,
        good={"json": profile},
        bad={"json": {**profile, "birth_date": BIRTH + "x", "onboarded_at": 123}},
    )
    await both(
        "PATCH /v1/customers/{customer_id}",
        customer,
        good={"json": {"display_name": NAME}},
        bad={"json": {"display_name": NAME + NUL}},
    )
    await both(
        "POST /v1/customers/import",
        "/v1/customers/import",
        good={
            "content": f'{{"customer_id": "{CUSTOMER}-2", "segment": "retail", "display_name": "{NAME}", '
            f'"birth_date": "{BIRTH}", "onboarded_at": "2020-01-01T00:00:00Z"}}\n',
            "headers": {"content-type": "application/x-ndjson"},
        },
        bad={
            "content": f'{{"customer_id": "{CUSTOMER}-3", "segment": "retail", '
            f'"display_name": "{NAME}\\u0000", "onboarded_at": "2020-01-01T00:00:00Z"}}\n',
            "headers": {"content-type": "application/x-ndjson"},
        },
    )
    await both(
        "PUT /v1/customers/{customer_id}/holdings",
        f"{customer}/holdings",
        good={"json": {"holdings": [{"product_code": "savings", "balance": BALANCE, "as_of": today}]}},
        bad={"json": {"holdings": [{"product_code": "savings", "balance": BALANCE + "1", "as_of": BIRTH}]}},
    )
    await both(
        "POST /v1/holdings/import",
        "/v1/holdings/import",
        good={  # a line merged and a line rejected (the import answers 201 and names the rejected line)
            "content": f'{{"customer_id": "{CUSTOMER}", "product_code": "savings", "balance": "{BALANCE}", '
            f'"as_of": "{today}"}}\n{{"customer_id": "{CUSTOMER}-9", "product_code": "{EMAIL}", '
            f'"balance": "{BALANCE}1", "as_of": "{BIRTH}"}}\n',
            "headers": {"content-type": "application/x-ndjson"},
        },
        bad={  # a CSV whose header is wrong: refused whole
            "content": f"customer_id,{EMAIL},balance,as_of\n{CUSTOMER},savings,{BALANCE},{today}\n",
            "headers": {"content-type": "text/csv"},
        },
    )
    event = {
        "type": "transaction",
        "customer_id": CUSTOMER,
        "occurred_at": now.isoformat(),
        "amount": BALANCE,
        "direction": "credit",
        "channel": "mobile",
    }
    await both(
        "POST /v1/events",
        "/v1/events",
        good={"json": {"events": [{**event, "event_id": f"{EMAIL}-1"}]}},
        bad={"json": {"events": [{**event, "event_id": f"{EMAIL}{NUL}"}]}},
    )

    policy = {
        "policy_key": "loyalty",
        "name": f"{NAME}'s tiers",
        "description": FREE_TEXT,
        "tiers": [
            {"code": "fan", "label": "Fan", "rank": 20, "condition": {"attr": "email", "op": "eq", "value": EMAIL}},
            {"code": "everyone", "label": "Everyone", "rank": 10, "condition": {"always": True}},
        ],
    }
    await both(
        "POST /v1/tier-policies",
        "/v1/tier-policies",
        good={"json": policy},
        bad={"json": {**policy, "description": FREE_TEXT + NUL}},
    )
    await both(
        "POST /v1/tier-policies/{policy_key}/versions",
        "/v1/tier-policies/loyalty/versions",
        good={"json": {"copy_from": 1, "description": FREE_TEXT}},
        bad={"json": {"copy_from": 1, "description": FREE_TEXT + NUL}},
    )
    etag = (await request("GET", "/v1/tier-policies/loyalty/versions/2")).headers["etag"]
    await both(
        "PUT /v1/tier-policies/{policy_key}/versions/{version}",
        "/v1/tier-policies/loyalty/versions/2",
        good={"json": {"tiers": policy["tiers"], "description": FREE_TEXT}, "headers": {"If-Match": etag}},
        bad={"json": {"tiers": policy["tiers"], "description": FREE_TEXT + NUL}, "headers": {"If-Match": etag}},
    )
    await both(
        "POST /v1/tier-policies/{policy_key}/versions/{version}/evaluate",
        "/v1/tier-policies/loyalty/versions/1/evaluate",
        good={"json": {"attributes": {"email": EMAIL, "phone": PHONE}}},
        bad={"json": {"attributes": {"email": EMAIL + NUL}}},
    )
    await both(
        "POST /v1/tier-policies/{policy_key}/versions/{version}/simulate",
        "/v1/tier-policies/loyalty/versions/1/simulate",
        good={},
        bad={"headers": {"X-API-Key": EMAIL}},
    )
    activated = await both(
        "POST /v1/tier-policies/{policy_key}/versions/{version}/activate",
        "/v1/tier-policies/loyalty/versions/1/activate",
        good={},
        bad={"headers": {"X-API-Key": NAME}},
    )
    await both(
        "POST /v1/tier-policies/{policy_key}/versions/{version}/retire",
        "/v1/tier-policies/loyalty/versions/2/retire",
        good={},
        bad={"headers": {"X-API-Key": PHONE}},
    )
    for _ in range(100):  # the run the activation started (in the background on a live server) ends first
        if (await request("GET", activated.headers["location"])).json()["status"] != "running":
            break
        await asyncio.sleep(0.1)
    await both(
        "POST /v1/tier-runs",
        "/v1/tier-runs",
        good={"json": {"policy_key": "loyalty"}},
        bad={"json": {"policy_key": NAME}},
    )
    await both(
        "POST /v1/customers/{customer_id}/tiers/evaluate",
        f"{customer}/tiers/evaluate",
        good={},
        bad={"headers": {"X-API-Key": EMAIL}},
    )
    await both(
        "PUT /v1/customers/{customer_id}/tiers/{policy_key}/override",
        f"{customer}/tiers/loyalty/override",
        good={"json": {"tier": "fan", "reason": FREE_TEXT}},
        bad={"json": {"tier": "fan", "reason": FREE_TEXT + NUL}},
    )
    await both(
        "DELETE /v1/customers/{customer_id}/tiers/{policy_key}/override",
        f"{customer}/tiers/loyalty/override",
        good={},
        bad={"headers": {"X-API-Key": NAME}},
    )
    await both(
        "POST /v1/customers/tiers:read",
        "/v1/customers/tiers:read",
        good={"json": {"customer_ids": [CUSTOMER, f"{CUSTOMER}-0"]}, "headers": {"Accept-Language": "zh-CN"}},
        bad={"json": {"customer_ids": [CUSTOMER, EMAIL + NUL]}},
    )

    survey = {
        "event_id": f"{EMAIL}-survey",
        "customer_id": CUSTOMER,
        "kind": "nps",
        "score": 3,
        "channel": "mobile",
        "touchpoint": "app_rating_prompt",
        "comment": FREE_TEXT,
        "occurred_at": now.isoformat(),
    }
    await both(
        "POST /v1/feedback/surveys",
        "/v1/feedback/surveys",
        good={"json": survey},
        bad={"json": {**survey, "comment": FREE_TEXT + NUL}},
    )
    complaint = {
        "event_id": f"{EMAIL}-complaint",
        "customer_id": CUSTOMER,
        "category": "service",
        "channel": "phone",
        "description": FREE_TEXT,
    }
    opened = await both(
        "POST /v1/feedback/complaints",
        "/v1/feedback/complaints",
        good={"json": complaint},
        bad={"json": {**complaint, "description": FREE_TEXT + NUL}},
    )
    await both(
        "POST /v1/feedback/complaints/{complaint_id}/transitions",
        f"/v1/feedback/complaints/{opened.json()['id']}/transitions",
        good={"json": {"to_status": "resolved", "note": FREE_TEXT}},
        bad={"json": {"to_status": "resolved", "note": FREE_TEXT + NUL}},
    )
    served = (await request("GET", f"{customer}/recommendations?explore=false")).json()["items"]
    recommendation = served[0]["recommendation_id"] if served else str(uuid.uuid4())
    feedback = {
        "event_id": f"{EMAIL}-click",
        "recommendation_id": recommendation,
        "customer_id": CUSTOMER,
        "type": "click",
        "occurred_at": now.isoformat(),
    }
    await both(
        "POST /v1/feedback/events",
        "/v1/feedback/events",
        good={"json": {"events": [feedback]}},
        bad={"json": {"events": [feedback], "contact": EMAIL + NUL}},  # a bad event alone is rejected with a 200
    )
    await both(
        "PUT /v1/contact-policy",
        "/v1/contact-policy",
        good={
            "json": {
                "rules": [
                    {
                        "name": f"{NAME} rule",
                        "outcome": "dismiss",
                        "threshold": 1,
                        "window_days": 30,
                        "scope": "product",
                        "suppress_days": 30,
                    }
                ]
            }
        },
        bad={
            "json": {
                "rules": [
                    {
                        "name": f"{NAME}{NUL}",
                        "outcome": "dismiss",
                        "threshold": 1,
                        "window_days": 30,
                        "scope": "product",
                        "suppress_days": 30,
                    }
                ]
            }
        },
    )
    gift = {
        "code": "fan-gift",
        "kind": "gift",
        "channels": ["mobile"],
        "texts": {"en": {"name": NAME, "description": FREE_TEXT}},
        "attachments": [
            {"policy_key": "loyalty", "tier": "fan", "condition": {"attr": "email", "op": "eq", "value": EMAIL}}
        ],
    }
    await both(
        "POST /v1/benefits",
        "/v1/benefits",
        good={"json": gift},
        bad={"json": {**gift, "texts": {"en": {"name": NAME, "description": FREE_TEXT + NUL}}}},
    )
    await both(
        "PATCH /v1/benefits/{benefit_code}",
        "/v1/benefits/fan-gift",
        good={"json": {"texts": {"en": {"name": PHONE}}}},
        bad={"json": {"texts": {"en": {"name": EMAIL + NUL}}}},
    )
    await both(
        "POST /v1/customers/{customer_id}/benefits/{benefit_code}/uses",
        f"/v1/customers/{CUSTOMER}/benefits/fan-gift/uses",
        good={"json": {"channel": "mobile"}, "headers": {"Idempotency-Key": EMAIL.replace("@", "-")}},
        bad={"json": {"channel": "branch"}, "headers": {"Idempotency-Key": PHONE.replace(" ", "-")}},
    )
    await both(
        "DELETE /v1/benefits/{benefit_code}", "/v1/benefits/fan-gift", good={}, bad={"headers": {"X-API-Key": NAME}}
    )
    created = await both(
        "POST /v1/api-keys",
        "/v1/api-keys",
        good={"json": {"name": NAME, "role": "app"}},
        bad={"json": {"name": NAME + NUL, "role": "app"}},
    )
    await both(
        "DELETE /v1/api-keys/{key_id}",
        f"/v1/api-keys/{created.json()['id']}",
        good={},
        bad={"headers": {"X-API-Key": EMAIL}},
    )
    hook = {"url": "http://127.0.0.1:9/hooks", "event_types": ["complaint.status_changed"], "description": NAME}
    made = await both(
        "POST /v1/webhooks",
        "/v1/webhooks",
        good={"json": hook},
        bad={"json": {**hook, "url": f"http://{EMAIL}:{PHONE}@127.0.0.1:9/hooks"}},
    )
    webhook = f"/v1/webhooks/{made.json()['id']}"
    await both(
        "PATCH /v1/webhooks/{webhook_id}",
        webhook,
        good={"json": {"description": PHONE}},
        bad={"json": {"description": NAME + NUL}},
    )
    await both(
        "POST /v1/webhooks/{webhook_id}/rotate-secret",
        f"{webhook}/rotate-secret",
        good={"json": {}},
        bad={"json": {"overlap_hours": EMAIL}},
    )
    await both(
        "POST /v1/webhooks/{webhook_id}/deliveries/redeliver-dead",
        f"{webhook}/deliveries/redeliver-dead",
        good={},
        bad={"headers": {"X-API-Key": EMAIL}},
    )
    await send(
        "POST /v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",  # no delivery in this test
        f"{webhook}/deliveries/987654321/redeliver",
        "bad",
        headers={"X-Request-ID": PHONE},
    )
    await both("DELETE /v1/webhooks/{webhook_id}", webhook, good={}, bad={"headers": {"X-API-Key": PHONE}})
    await exercise_engagement(both, now)
    await exercise_managers(both, request, now)
    await both(
        "PUT /v1/products/{product_code}/quota",
        "/v1/products/savings/quota",
        good={"json": {"period": "month", "cap_count": 5}},
        bad={"json": {"period": NAME, "cap_count": 5}},
    )
    await both(
        "DELETE /v1/products/{product_code}/quota",
        "/v1/products/savings/quota",
        good={},
        bad={"headers": {"X-API-Key": EMAIL}},
    )
    await both(
        "PUT /v1/recommendation-fallback",
        "/v1/recommendation-fallback",
        good={"json": {"enabled": True, "code": "CALL_US", "texts": {"en": f"call {PHONE}"}}},
        bad={"json": {"enabled": True, "code": "CALL_US", "texts": {"en": f"{EMAIL}{NUL}"}}},
    )
    await both(
        "DELETE /v1/products/{product_code}", "/v1/products/savings", good={}, bad={"headers": {"X-API-Key": NAME}}
    )
    await both("DELETE /v1/customers/{customer_id}", customer, good={}, bad={"headers": {"X-API-Key": PHONE}})
    # No model is trained here: the ranker model writes are refused (no such version, nothing to roll back to).
    await send("POST /v1/ranker-models/{version}/serve", "/v1/ranker-models/48151623/serve", "bad")
    await send(
        "POST /v1/ranker-models/{version}/serve", "/v1/ranker-models/1/serve", "bad", headers={"X-API-Key": NAME}
    )
    await send("POST /v1/ranker-models/rollback", "/v1/ranker-models/rollback", "bad")
    await send("POST /v1/ranker-models/rollback", "/v1/ranker-models/rollback", "bad", headers={"X-API-Key": PHONE})
    return done


async def exercise_managers(both, request, now: datetime) -> None:
    """The relationship-manager routes: managers named after a person, a run, a reassignment and a contact with
    personal text."""
    serves = {"policy_key": "loyalty", "tiers": ["fan", "everyone"]}
    for manager_id in ("rm-1", "rm-2"):
        manager = {"manager_id": manager_id, "name": NAME, "team": EMAIL, "serves": serves, "capacity": 5}
        await both(
            "POST /v1/relationship-managers",
            "/v1/relationship-managers",
            good={"json": manager},
            bad={"json": {**manager, "name": NAME + NUL}},
        )
    await both(
        "PATCH /v1/relationship-managers/{manager_id}",
        "/v1/relationship-managers/rm-1",
        good={"json": {"name": PHONE, "capacity": 6}},
        bad={"json": {"team": EMAIL + NUL}},
    )
    await both(
        "POST /v1/manager-assignment-runs",
        "/v1/manager-assignment-runs",
        good={"json": {}, "headers": {"Idempotency-Key": "run-" + EMAIL.replace("@", "-")}},
        bad={"json": {"actor": NAME}},
    )
    await both(
        "PUT /v1/customers/{customer_id}/relationship-manager",
        f"/v1/customers/{CUSTOMER}/relationship-manager",
        good={"json": {"manager_id": "rm-2", "reason": FREE_TEXT}},
        bad={"json": {"manager_id": "rm-2", "reason": FREE_TEXT + NUL}},
    )
    contact = {"kind": "call", "channel": "phone", "outcome": "reached", "note": FREE_TEXT}
    await both(
        "POST /v1/customers/{customer_id}/contacts",
        f"/v1/customers/{CUSTOMER}/contacts",
        good={
            "json": {**contact, "contacted_at": (now - timedelta(days=5)).isoformat()},
            "headers": {"Idempotency-Key": PHONE.replace(" ", "")},
        },
        bad={"json": {**contact, "note": FREE_TEXT + NUL}},
    )
    for tier in ("fan", "everyone"):  # last contact 5 days ago, a cadence of 1 day: a task is due
        await both(
            "PUT /v1/contact-cadences/{policy_key}/{tier}",
            f"/v1/contact-cadences/loyalty/{tier}",
            good={"json": {"days": 1}},
            bad={"json": {"days": PHONE}},
        )
    [task] = (await request("GET", "/v1/relationship-managers/rm-2/worklist")).json()["items"]
    await both(
        "PATCH /v1/manager-tasks/{task_id}",
        f"/v1/manager-tasks/{task['id']}",
        good={"json": {"state": "done", "outcome": FREE_TEXT}},
        bad={"json": {"state": "done", "outcome": FREE_TEXT + NUL}},
    )
    await both(
        "PUT /v1/worklist-rules",
        "/v1/worklist-rules",
        good={"json": {"care": {"days_before": 7}, "complaint_sla": {"days": 5}}},
        bad={"json": {"complaint_sla": {"days": PHONE}}},
    )
    holiday = {"holiday_key": "quux-day", "name": f"{NAME}'s day", "date": (now + timedelta(days=3)).date().isoformat()}
    await both(
        "POST /v1/care-calendar/holidays",
        "/v1/care-calendar/holidays",
        good={"json": holiday},
        bad={"json": {**holiday, "holiday_key": EMAIL}},
    )
    await both(
        "PATCH /v1/care-calendar/holidays/{holiday_key}",
        "/v1/care-calendar/holidays/quux-day",
        good={"json": {"names": {"zh-CN": FREE_TEXT[:200]}}},
        bad={"json": {"date": PHONE}},
    )
    assert (await request("GET", "/v1/relationship-managers/rm-2/worklist")).status_code == 200  # care tasks
    await both(
        "DELETE /v1/care-calendar/holidays/{holiday_key}",
        "/v1/care-calendar/holidays/quux-day",
        good={},
        bad={"headers": {"X-API-Key": NAME}},
    )


async def exercise_engagement(both, now: datetime) -> None:
    """The engagement routes: a community with personal text, the customer invited, joined, active, removed."""
    club = {"key": "quux-club", "name": f"{NAME}'s club", "goal": FREE_TEXT, "owner_team": "t", "state": "open"}
    club["audience"] = {"attr": "segment", "op": "eq", "value": "retail"}
    await both("POST /v1/communities", "/v1/communities", good={"json": club}, bad={"json": {**club, "key": EMAIL}})
    community = "/v1/communities/quux-club"
    await both(
        "PATCH /v1/communities/{community_key}",
        community,
        good={"json": {"goal": f"call {PHONE}"}},
        bad={"json": {"goal": f"{EMAIL}{NUL}"}},
    )
    await both(
        "POST /v1/communities/{community_key}/invitations",
        f"{community}/invitations",
        good={"json": {"customer_ids": [CUSTOMER], "channel": "mobile"}},
        bad={"json": {"customer_ids": [EMAIL], "channel": "mobile"}},
    )
    await both(
        "POST /v1/communities/{community_key}/members/{customer_id}/transitions",
        f"{community}/members/{CUSTOMER}/transitions",
        good={"json": {"to_state": "joined", "channel": "mobile", "at": (now - timedelta(days=1)).isoformat()}},
        bad={"json": {"to_state": "joined", "channel": PHONE}},
    )
    event = {"event_id": f"post-{CUSTOMER}", "customer_id": CUSTOMER, "kind": "post", "occurred_at": now.isoformat()}
    await both(
        "POST /v1/communities/{community_key}/activity-events",
        f"{community}/activity-events",
        good={"json": {"events": [event]}},
        bad={"json": {"events": [{**event, "kind": NAME}]}},
    )
    start = now + timedelta(days=3)
    salon = {
        "key": "quux_salon",
        "name": f"{NAME}'s salon",
        "kind": "salon",
        "owner_team": "t",
        "audience": {"attr": "segment", "op": "eq", "value": "retail"},
        "channel": "branch",
        "capacity": 5,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=2)).isoformat(),
    }
    await both("POST /v1/activities", "/v1/activities", good={"json": salon}, bad={"json": {**salon, "key": EMAIL}})
    activity = "/v1/activities/quux_salon"
    await both(
        "PATCH /v1/activities/{activity_key}",
        activity,
        good={"json": {"name": PHONE}},
        bad={"json": {"name": NAME + NUL}},
    )
    await both(
        "POST /v1/activities/{activity_key}/invitations",
        f"{activity}/invitations",
        good={"json": {"customer_ids": [CUSTOMER], "channel": "mobile"}},
        bad={"json": {"customer_ids": [PHONE], "channel": "mobile"}},
    )
    await both(
        "POST /v1/activities/{activity_key}/participants/{customer_id}/rsvp",
        f"{activity}/participants/{CUSTOMER}/rsvp",
        good={"json": {"answer": "accept", "channel": "mobile"}},
        bad={"json": {"answer": "accept", "channel": EMAIL}},
    )
    await both(
        "POST /v1/activities/{activity_key}/attendance",
        f"{activity}/attendance",
        good={"json": {"records": [{"customer_id": CUSTOMER, "attended": True}]}},
        bad={"json": {"records": [{"customer_id": NAME, "attended": True}]}},
    )
    referral = {
        "event_id": f"ref-{CUSTOMER}",
        "referrer_customer_id": CUSTOMER,
        "referral_code": "QUUX-48151623",
        "referred_at": now.isoformat(),
    }
    made = await both(
        "POST /v1/referrals",
        "/v1/referrals",
        good={"json": referral},
        bad={"json": {**referral, "referee_customer_id": CUSTOMER}},
    )
    friend = {"segment": "retail", "onboarded_at": now.isoformat(), "display_name": NAME}
    await both(
        "PUT /v1/customers/{customer_id}",
        "/v1/customers/ZQX-FRIEND",
        good={"json": friend},
        bad={"json": {**friend, "segment": EMAIL}},
    )
    await both(
        "POST /v1/referrals/{referral_id}/transitions",
        f"/v1/referrals/{made.json()['id']}/transitions",
        good={"json": {"to_status": "onboarded", "referee_customer_id": "ZQX-FRIEND"}},
        bad={"json": {"to_status": "onboarded", "referee_customer_id": EMAIL}},
    )
    await both(
        "DELETE /v1/communities/{community_key}/members/{customer_id}",
        f"{community}/members/{CUSTOMER}",
        good={},
        bad={"headers": {"X-API-Key": EMAIL}},
    )


async def test_no_log_record_carries_a_value_from_any_write_route(client, as_role, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, every level

    async def request(method: str, path: str, **kwargs) -> httpx.Response:
        return await client.request(
            method, path, **{**kwargs, "headers": {**as_role("admin"), **kwargs.get("headers", {})}}
        )

    assert await exercise_every_write_route(request) == write_operations()
    assert len(caplog.records) > 100
    formatter = JsonFormatter()  # what production writes: the message, the extras and the traceback
    served = [record for record in caplog.records if not record.name.startswith(CLIENT_LOGGERS)]
    assert {"tierwise.access", "app.core.errors"} <= {record.name for record in served}
    for record in served:
        line = formatter.format(record)
        assert not leaks(line), (leaks(line), line)


async def test_the_production_server_log_carries_no_value_from_any_write_route(scratch_database, tmp_path):
    async with live_server(scratch_database(), tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:

            async def request(method: str, path: str, **kwargs) -> httpx.Response:
                headers = {**server.headers("admin"), **kwargs.pop("headers", {})}
                return await client.request(method, path, headers=headers, **kwargs)

            assert await exercise_every_write_route(request) == write_operations()
            await asyncio.sleep(0.5)  # the tier runs the writes started finish and log
    log = server.log()
    lines = log.splitlines()
    assert sum('"logger": "tierwise.access"' in line for line in lines) > 60  # every request was logged
    assert any('"msg": "unstorable value refused"' in line for line in lines)
    for line in lines:
        assert not leaks(line), (leaks(line), line)
