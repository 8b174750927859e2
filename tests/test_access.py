"""Access: every /v1 route declares a scope; each role gets its route's success status, built from a valid request
per route (CALLS), for every scope it holds, and 403 for every scope it lacks; no key is 401. A route missing
from CALLS fails the suite until it is listed."""

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.security import ROLE_SCOPES, Scope, role_scopes
from app.main import ROUTERS, create_app
from app.webhooks.delivery import _FAN_OUT as FAN_OUT
from tests.factories import WEALTH_TIERS, add_products, customer_body


def route_scopes() -> list[tuple[str, str, str]]:
    """(method, path, scope) for every /v1 route, read from the route's and its router's dependencies."""
    out = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            declared = [*router.dependencies, *route.dependencies]
            scopes = {getattr(d.dependency, "required_scope", None) for d in declared} - {None}
            assert len(scopes) == 1, f"{route.methods} {route.path} must declare exactly one scope, has {scopes}"
            out.extend((method, route.path, next(iter(scopes))) for method in route.methods)
    return out


ROUTES = route_scopes()


@dataclass
class Call:
    """A valid request to a route and the status it succeeds with."""

    status: int
    url: str | None = None  # the route's path with these values (default: the seeded customer, policy...)
    kwargs: dict[str, Any] = field(default_factory=dict)


HOLDINGS_IMPORT = {
    "content": '{"customer_id": "AC1", "product_code": "savings_account", "balance": "60000.00", "as_of": "'
    + date.today().isoformat()
    + '"}\n',
    "headers": {"content-type": "application/x-ndjson"},
}


def calls(seed: dict) -> dict[tuple[str, str], Call]:
    now = datetime.now(UTC).replace(microsecond=0)
    ago = (now - timedelta(hours=1)).isoformat()
    holdings = {
        "holdings": [{"product_code": "savings_account", "balance": "60000.00", "as_of": date.today().isoformat()}]
    }
    rules = {
        "rules": [
            {
                "name": "dismissed",
                "outcome": "dismiss",
                "threshold": 1,
                "window_days": 30,
                "scope": "product",
                "channel": None,
                "suppress_days": 60,
            }
        ]
    }
    window = {"from": (now - timedelta(days=30)).isoformat(), "to": now.isoformat()}
    webhook = f"/v1/webhooks/{seed['webhook']}"
    delivery = f"{webhook}/deliveries/{seed['delivery']}"
    return {
        ("GET", "/v1/customers"): Call(200),
        ("POST", "/v1/customers/import"): Call(
            200,
            kwargs={
                "content": '{"customer_id": "IMP1", "segment": "retail", "onboarded_at": "2020-01-15T00:00:00Z"}\n',
                "headers": {"content-type": "application/x-ndjson"},
            },
        ),
        ("PUT", "/v1/customers/{customer_id}"): Call(200, kwargs={"json": customer_body()}),
        ("GET", "/v1/customers/{customer_id}"): Call(200),
        ("PATCH", "/v1/customers/{customer_id}"): Call(200, kwargs={"json": {"marketing_consent": False}}),
        ("DELETE", "/v1/customers/{customer_id}"): Call(204),
        ("GET", "/v1/customers/{customer_id}/holdings"): Call(200),
        ("PUT", "/v1/customers/{customer_id}/holdings"): Call(200, kwargs={"json": holdings}),
        ("POST", "/v1/events"): Call(
            200,
            kwargs={
                "json": {
                    "events": [
                        {
                            "type": "login",
                            "event_id": "acc-login-1",
                            "customer_id": "AC1",
                            "occurred_at": ago,
                            "channel": "mobile",
                        }
                    ]
                }
            },
        ),
        ("GET", "/v1/attributes"): Call(200),
        ("GET", "/v1/attributes/custom"): Call(200),
        ("GET", "/v1/attributes/custom/{name}"): Call(200, "/v1/attributes/custom/acc_flag"),
        ("PUT", "/v1/attributes/custom/{name}"): Call(
            200, "/v1/attributes/custom/salary_paid", {"json": {"type": "boolean", "description": "Salary in"}}
        ),
        ("POST", "/v1/products"): Call(
            201,
            kwargs={
                "json": {
                    "product_code": "acc_fund",
                    "name": "Access fund",
                    "category": "fund",
                    "risk_level": 3,
                    "channels": ["mobile"],
                }
            },
        ),
        ("GET", "/v1/products"): Call(200),
        ("GET", "/v1/products/{product_code}"): Call(200, "/v1/products/equity_fund"),
        ("PATCH", "/v1/products/{product_code}"): Call(200, "/v1/products/equity_fund", {"json": {"lever": "1.5"}}),
        ("DELETE", "/v1/products/{product_code}"): Call(200, "/v1/products/equity_fund"),
        ("POST", "/v1/api-keys"): Call(201, kwargs={"json": {"name": "another", "role": "app"}}),
        ("GET", "/v1/api-keys"): Call(200),
        ("GET", "/v1/ranker-models"): Call(200),
        ("GET", "/v1/ranker-models/{version}"): Call(200, f"/v1/ranker-models/{seed['ranker_model']}"),
        ("POST", "/v1/ranker-models/{version}/serve"): Call(200, f"/v1/ranker-models/{seed['ranker_model']}/serve"),
        ("POST", "/v1/ranker-models/rollback"): Call(200),
        ("DELETE", "/v1/api-keys/{key_id}"): Call(200, f"/v1/api-keys/{seed['spare_key']}"),
        ("GET", "/v1/tier-policies"): Call(200),
        ("POST", "/v1/tier-policies"): Call(
            201, kwargs={"json": {"policy_key": "other", "name": "Other", "tiers": WEALTH_TIERS}}
        ),
        ("GET", "/v1/tier-policies/{policy_key}"): Call(200),
        ("GET", "/v1/tier-policies/{policy_key}/changes"): Call(200),
        ("POST", "/v1/tier-policies/{policy_key}/versions"): Call(201, kwargs={"json": {"copy_from": 1}}),
        ("GET", "/v1/tier-policies/{policy_key}/versions/{version}"): Call(200),
        ("PUT", "/v1/tier-policies/{policy_key}/versions/{version}"): Call(
            200,
            "/v1/tier-policies/wealth/versions/2",
            {"json": {"tiers": WEALTH_TIERS, "downgrade_grace_days": 30}, "headers": {"If-Match": seed["etag"]}},
        ),
        ("POST", "/v1/tier-policies/{policy_key}/versions/{version}/activate"): Call(
            200, "/v1/tier-policies/wealth/versions/2/activate"
        ),
        ("POST", "/v1/tier-policies/{policy_key}/versions/{version}/retire"): Call(
            200, "/v1/tier-policies/wealth/versions/2/retire"
        ),
        ("POST", "/v1/tier-policies/{policy_key}/versions/{version}/evaluate"): Call(
            200, kwargs={"json": {"attributes": {"aum_avg_3m": 620000}}}
        ),
        ("POST", "/v1/tier-policies/{policy_key}/versions/{version}/simulate"): Call(200),
        ("GET", "/v1/customers/{customer_id}/tiers"): Call(200),
        ("POST", "/v1/customers/{customer_id}/tiers/evaluate"): Call(200),
        ("GET", "/v1/customers/{customer_id}/tiers/history"): Call(200),
        ("GET", "/v1/customers/{customer_id}/tiers/{policy_key}/override"): Call(200),
        ("PUT", "/v1/customers/{customer_id}/tiers/{policy_key}/override"): Call(
            200, kwargs={"json": {"tier": "private", "reason": "approved by the RM lead"}}
        ),
        ("DELETE", "/v1/customers/{customer_id}/tiers/{policy_key}/override"): Call(200),
        ("GET", "/v1/tier-transitions"): Call(200),
        ("POST", "/v1/tier-runs"): Call(202, kwargs={"json": {"policy_key": "wealth"}}),
        ("GET", "/v1/tier-runs/{run_id}"): Call(200, f"/v1/tier-runs/{seed['run']}"),
        ("POST", "/v1/holdings/import"): Call(200, kwargs=HOLDINGS_IMPORT),  # the seed's file: that import
        ("GET", "/v1/holdings/imports/{import_id}"): Call(200, f"/v1/holdings/imports/{seed['holdings_import']}"),
        ("GET", "/v1/tier-runs"): Call(200),
        ("GET", "/v1/api-keys/{key_id}"): Call(200, f"/v1/api-keys/{seed['spare_key']}"),
        ("GET", "/v1/feedback/surveys/{survey_id}"): Call(200, f"/v1/feedback/surveys/{seed['survey']}"),
        ("GET", "/v1/care-calendar"): Call(200, kwargs={"params": {"policy_key": "wealth", "tier": "gold"}}),
        ("GET", "/v1/customers/{customer_id}/recommendations"): Call(200),
        ("GET", "/v1/products/{product_code}/quota"): Call(200, "/v1/products/equity_fund/quota"),
        ("PUT", "/v1/products/{product_code}/quota"): Call(
            200, "/v1/products/equity_fund/quota", {"json": {"period": "month", "cap_count": 10}}
        ),
        ("DELETE", "/v1/products/{product_code}/quota"): Call(204, "/v1/products/equity_fund/quota"),
        ("GET", "/v1/product-quotas"): Call(200),
        ("GET", "/v1/recommendation-fallback"): Call(200),
        ("PUT", "/v1/recommendation-fallback"): Call(
            200, kwargs={"json": {"enabled": True, "code": "TALK_TO_ADVISER", "texts": {"en": "Talk to us"}}}
        ),
        ("GET", "/v1/contact-policy"): Call(200),
        ("PUT", "/v1/contact-policy"): Call(200, kwargs={"json": rules}),
        ("GET", "/v1/audit"): Call(200),
        ("POST", "/v1/feedback/events"): Call(
            200,
            kwargs={
                "json": {
                    "events": [
                        {
                            "event_id": "acc-fb-1",
                            "recommendation_id": seed["recommendation"],
                            "customer_id": "AC1",
                            "type": "impression",
                            "occurred_at": ago,
                            "channel": "mobile",
                        }
                    ]
                }
            },
        ),
        ("POST", "/v1/feedback/surveys"): Call(
            201,
            kwargs={
                "json": {
                    "event_id": "acc-s-2",
                    "customer_id": "AC1",
                    "kind": "nps",
                    "score": 9,
                    "channel": "mobile",
                    "touchpoint": "app_rating_prompt",
                    "occurred_at": ago,
                }
            },
        ),
        ("GET", "/v1/feedback/surveys"): Call(200),
        ("POST", "/v1/feedback/complaints"): Call(
            201,
            kwargs={
                "json": {
                    "event_id": "acc-c-2",
                    "customer_id": "AC1",
                    "category": "fees",
                    "channel": "phone",
                    "description": "A fee",
                }
            },
        ),
        ("GET", "/v1/feedback/complaints"): Call(200),
        ("GET", "/v1/feedback/complaints/{complaint_id}"): Call(200, f"/v1/feedback/complaints/{seed['complaint']}"),
        ("POST", "/v1/feedback/complaints/{complaint_id}/transitions"): Call(
            200, f"/v1/feedback/complaints/{seed['complaint']}/transitions", {"json": {"to_status": "in_progress"}}
        ),
        ("GET", "/v1/reports/tier-distribution"): Call(200, kwargs={"params": {"policy_key": "wealth"}}),
        ("GET", "/v1/reports/tier-migrations"): Call(200, kwargs={"params": {"policy_key": "wealth", **window}}),
        ("GET", "/v1/reports/recommendation-funnel"): Call(200, kwargs={"params": window}),
        ("GET", "/v1/reports/satisfaction"): Call(200, kwargs={"params": {"policy_key": "wealth", **window}}),
        ("GET", "/v1/reports/retention"): Call(200, kwargs={"params": {"policy_key": "wealth", **window}}),
        ("GET", "/v1/reports/stickiness"): Call(200, kwargs={"params": {"policy_key": "wealth"}}),
        ("GET", "/v1/reports/contribution"): Call(200, kwargs={"params": {"policy_key": "wealth", **window}}),
        ("GET", "/v1/reports/relationship-managers"): Call(200, kwargs={"params": {"policy_key": "wealth", **window}}),
        ("GET", "/v1/reports/churn-models"): Call(200),
        ("GET", "/v1/contribution-margins"): Call(200),
        ("PUT", "/v1/contribution-margins/{product_code}"): Call(
            200, "/v1/contribution-margins/savings_account", {"json": {"margin_rate": "0.012", "monthly_fee": "1.00"}}
        ),
        ("GET", "/v1/webhooks/event-types"): Call(200),
        ("POST", "/v1/webhooks"): Call(
            201, kwargs={"json": {"url": "http://127.0.0.1:9/other", "event_types": ["tier.upgraded"]}}
        ),
        ("GET", "/v1/webhooks"): Call(200),
        ("GET", "/v1/webhooks/{webhook_id}"): Call(200, webhook),
        ("PATCH", "/v1/webhooks/{webhook_id}"): Call(200, webhook, {"json": {"status": "paused"}}),
        ("DELETE", "/v1/webhooks/{webhook_id}"): Call(204, webhook),
        ("POST", "/v1/webhooks/{webhook_id}/rotate-secret"): Call(200, f"{webhook}/rotate-secret", {"json": {}}),
        ("GET", "/v1/webhooks/{webhook_id}/deliveries"): Call(200, f"{webhook}/deliveries"),
        ("GET", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"): Call(200, delivery),
        ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): Call(202, f"{delivery}/redeliver"),
        ("POST", "/v1/webhooks/{webhook_id}/deliveries/redeliver-dead"): Call(
            200, f"{webhook}/deliveries/redeliver-dead"
        ),
        ("POST", "/v1/customers/tiers:read"): Call(200, kwargs={"json": {"customer_ids": ["AC1", "NOBODY"]}}),
        **benefit_calls(seed),
        **engagement_calls(now, seed),
        **manager_calls(seed),
    }


COMMUNITY = "/v1/communities/ac-club"  # seeded open, with AC1 invited


def engagement_calls(now: datetime, seed: dict) -> dict[tuple[str, str], Call]:
    community = {"key": "ac-new", "name": "New", "owner_team": "t", "audience": {"always": True}}
    activity = [{"event_id": "acc-ca-1", "customer_id": "AC1", "kind": "post", "occurred_at": now.isoformat()}]
    return {
        ("POST", "/v1/communities"): Call(201, kwargs={"json": community}),
        ("GET", "/v1/communities"): Call(200),
        ("GET", "/v1/communities/{community_key}"): Call(200, COMMUNITY),
        ("PATCH", "/v1/communities/{community_key}"): Call(200, COMMUNITY, {"json": {"goal": "more"}}),
        ("POST", "/v1/communities/{community_key}/invitations"): Call(
            200, f"{COMMUNITY}/invitations", {"json": {"customer_ids": ["AC1"], "channel": "mobile"}}
        ),
        ("GET", "/v1/communities/{community_key}/members"): Call(200, f"{COMMUNITY}/members"),
        ("GET", "/v1/communities/{community_key}/members/{customer_id}"): Call(200, f"{COMMUNITY}/members/AC1"),
        ("POST", "/v1/communities/{community_key}/members/{customer_id}/transitions"): Call(
            200, f"{COMMUNITY}/members/AC1/transitions", {"json": {"to_state": "joined", "channel": "mobile"}}
        ),
        ("DELETE", "/v1/communities/{community_key}/members/{customer_id}"): Call(200, f"{COMMUNITY}/members/AC1"),
        ("POST", "/v1/communities/{community_key}/activity-events"): Call(
            200, f"{COMMUNITY}/activity-events", {"json": {"events": activity}}
        ),
        ("GET", "/v1/communities/{community_key}/metrics"): Call(200, f"{COMMUNITY}/metrics"),
        **activity_calls(now, seed.get("referral", 1)),
    }


ACTIVITY = "/v1/activities/ac_salon"  # seeded a week ahead, with AC1 invited
REFERRAL = "/v1/referrals/{referral}"  # seeded: AC1 referred a code, AC2 the customer it brought in


def activity_schedule(now: datetime) -> dict:
    return {
        "starts_at": (now + timedelta(days=7)).isoformat(),
        "ends_at": (now + timedelta(days=7, hours=2)).isoformat(),
    }


def activity_calls(now: datetime, referral: int) -> dict[tuple[str, str], Call]:
    activity = {
        "key": "ac_new",
        "name": "New",
        "kind": "lecture",
        "owner_team": "t",
        "audience": {"always": True},
        "channel": "online",
        "capacity": 10,
        **activity_schedule(now),
    }
    return {
        ("POST", "/v1/activities"): Call(201, kwargs={"json": activity}),
        ("GET", "/v1/activities"): Call(200),
        ("GET", "/v1/activities/{activity_key}"): Call(200, ACTIVITY),
        ("PATCH", "/v1/activities/{activity_key}"): Call(200, ACTIVITY, {"json": {"capacity": 30}}),
        ("POST", "/v1/activities/{activity_key}/invitations"): Call(
            200, f"{ACTIVITY}/invitations", {"json": {"customer_ids": ["AC1"], "channel": "mobile"}}
        ),
        ("POST", "/v1/activities/{activity_key}/participants/{customer_id}/rsvp"): Call(
            200, f"{ACTIVITY}/participants/AC1/rsvp", {"json": {"answer": "accept", "channel": "mobile"}}
        ),
        ("POST", "/v1/activities/{activity_key}/attendance"): Call(
            200, f"{ACTIVITY}/attendance", {"json": {"records": [{"customer_id": "AC1", "attended": True}]}}
        ),
        ("GET", "/v1/activities/{activity_key}/participants"): Call(200, f"{ACTIVITY}/participants"),
        ("GET", "/v1/activities/{activity_key}/participants/{customer_id}"): Call(200, f"{ACTIVITY}/participants/AC1"),
        ("GET", "/v1/activities/{activity_key}/results"): Call(200, f"{ACTIVITY}/results"),
        ("POST", "/v1/referrals"): Call(
            201,
            kwargs={
                "json": {
                    "event_id": "acc-ref-2",
                    "referrer_customer_id": "AC1",
                    "referral_code": "ACC-CODE-2",
                    "referred_at": (now - timedelta(days=1)).isoformat(),
                }
            },
        ),
        ("GET", "/v1/referrals"): Call(200),
        ("GET", "/v1/referrals/{referral_id}"): Call(200, REFERRAL.format(referral=referral)),
        ("POST", "/v1/referrals/{referral_id}/transitions"): Call(
            200,
            REFERRAL.format(referral=referral) + "/transitions",
            {"json": {"to_status": "onboarded", "referee_customer_id": "AC2"}},
        ),
    }


def benefit_calls(seed: dict) -> dict[tuple[str, str], Call]:
    new = {
        "code": "acc-other",
        "kind": "gift",
        "channels": ["mobile"],
        "texts": {"en": {"name": "Other"}},
        "attachments": [{"policy_key": "wealth", "tier": "gold"}],
    }
    return {
        ("POST", "/v1/benefits"): Call(201, kwargs={"json": new}),
        ("GET", "/v1/benefits"): Call(200),
        ("GET", "/v1/benefits/{benefit_code}"): Call(200),
        ("PATCH", "/v1/benefits/{benefit_code}"): Call(200, kwargs={"json": {"value": "3"}}),
        ("DELETE", "/v1/benefits/{benefit_code}"): Call(200),
        ("GET", "/v1/benefits/{benefit_code}/revisions"): Call(200),
        ("GET", "/v1/customers/{customer_id}/benefits"): Call(200),
        ("POST", "/v1/customers/{customer_id}/benefits/{benefit_code}/uses"): Call(201, kwargs={"json": {}}),
        ("GET", "/v1/customers/{customer_id}/benefit-uses"): Call(200),
        ("GET", "/v1/customers/{customer_id}/benefit-uses/{use_id}"): Call(
            200, f"/v1/customers/AC1/benefit-uses/{seed['benefit_use']}"
        ),
        ("GET", "/v1/reports/benefit-take-up"): Call(200),
    }


ALL_WEALTH_TIERS = {"policy_key": "wealth", "tiers": ["private", "wealth", "gold", "mass"]}


def manager_calls(seed: dict) -> dict[tuple[str, str], Call]:
    new = {"manager_id": "AC-RM3", "name": "Three", "team": "t", "serves": ALL_WEALTH_TIERS, "capacity": 5}
    contact = {"kind": "call", "channel": "phone", "outcome": "reached", "note": "Called."}
    return {
        ("POST", "/v1/relationship-managers"): Call(201, kwargs={"json": new}),
        ("GET", "/v1/relationship-managers"): Call(200),
        ("GET", "/v1/relationship-managers/{manager_id}"): Call(200),
        ("PATCH", "/v1/relationship-managers/{manager_id}"): Call(200, kwargs={"json": {"capacity": 7}}),
        ("GET", "/v1/relationship-managers/{manager_id}/contacts"): Call(200),
        ("POST", "/v1/manager-assignment-runs"): Call(201, kwargs={"json": {}}),
        ("GET", "/v1/manager-assignment-runs"): Call(200),
        ("GET", "/v1/manager-assignment-runs/{run_id}"): Call(
            200, f"/v1/manager-assignment-runs/{seed['manager_run']}"
        ),
        ("GET", "/v1/customers/{customer_id}/relationship-manager"): Call(200),
        ("PUT", "/v1/customers/{customer_id}/relationship-manager"): Call(
            200, kwargs={"json": {"manager_id": "AC-RM2", "reason": "Asked for it."}}
        ),
        ("GET", "/v1/customers/{customer_id}/relationship-manager/history"): Call(200),
        ("POST", "/v1/customers/{customer_id}/contacts"): Call(201, kwargs={"json": contact}),
        ("GET", "/v1/customers/{customer_id}/contacts"): Call(200),
        ("GET", "/v1/customers/{customer_id}/contacts/{contact_id}"): Call(
            200, f"/v1/customers/AC1/contacts/{seed['contact']}"
        ),
        ("GET", "/v1/reports/manager-coverage"): Call(200),
        ("GET", "/v1/relationship-managers/{manager_id}/worklist"): Call(200),
        ("PATCH", "/v1/manager-tasks/{task_id}"): Call(
            200, f"/v1/manager-tasks/{seed['task']}", {"json": {"state": "done", "outcome": "Called."}}
        ),
        ("GET", "/v1/contact-cadences"): Call(200),
        ("PUT", "/v1/contact-cadences/{policy_key}/{tier}"): Call(
            200, "/v1/contact-cadences/wealth/gold", {"json": {"days": 30}}
        ),
        ("GET", "/v1/worklist-rules"): Call(200),
        ("PUT", "/v1/worklist-rules"): Call(200, kwargs={"json": {"near_miss": {"share": "0.1"}}}),
        ("POST", "/v1/care-calendar/holidays"): Call(
            201, kwargs={"json": {"holiday_key": "acc-new-year", "name": "New Year", "date": "2027-01-01"}}
        ),
        ("GET", "/v1/care-calendar/holidays"): Call(200),
        ("GET", "/v1/care-calendar/holidays/{holiday_key}"): Call(200, "/v1/care-calendar/holidays/acc-holiday"),
        ("PATCH", "/v1/care-calendar/holidays/{holiday_key}"): Call(
            200, "/v1/care-calendar/holidays/acc-holiday", {"json": {"name": "Mid-Autumn"}}
        ),
        ("DELETE", "/v1/care-calendar/holidays/{holiday_key}"): Call(204, "/v1/care-calendar/holidays/acc-holiday"),
    }


async def seed_managers(ok, client, admin, session) -> tuple[int, int, int]:
    """Managers AC-RM1 and AC-RM2 serving every wealth tier, a run (its id) that gives AC1 one, a contact, the
    care calendar's holiday acc-holiday and an open task of AC1's."""
    for manager_id in ("AC-RM1", "AC-RM2"):
        body = {"manager_id": manager_id, "name": "RM", "team": "t", "serves": ALL_WEALTH_TIERS, "capacity": 5}
        await ok(client.post("/v1/relationship-managers", headers=admin, json=body), 201)
    run = await ok(client.post("/v1/manager-assignment-runs", headers=admin, json={}), 201)
    body = {"kind": "visit", "channel": "branch", "outcome": "reached"}
    contact = await ok(client.post("/v1/customers/AC1/contacts", headers=admin, json=body), 201)
    holiday = {"holiday_key": "acc-holiday", "name": "Mid-Autumn Festival", "date": "2027-09-15"}
    await ok(client.post("/v1/care-calendar/holidays", headers=admin, json=holiday), 201)
    task = await session.scalar(
        text(
            "INSERT INTO manager_task (customer_id, kind, period, reason, due_on) "
            "SELECT id, 'cadence_overdue', 'seed', 'seed', current_date FROM customer WHERE external_id = 'AC1' "
            "RETURNING id"
        )
    )
    await session.commit()
    return run.json()["id"], contact.json()["id"], task


DEFAULT_PATH_VALUES = {"customer_id": "AC1", "version": "1", "policy_key": "wealth", "benefit_code": "acc-benefit"}
DEFAULT_PATH_VALUES["manager_id"] = "AC-RM1"


def test_every_v1_route_in_the_app_has_a_valid_call_listed():
    spec = create_app(Settings(environment="test")).openapi()
    served = {(method.upper(), path) for path, ops in spec["paths"].items() if path.startswith("/v1") for method in ops}
    assert served == {(method, path) for method, path, _ in ROUTES}
    listed = set(
        calls(
            {
                "spare_key": 1,
                "etag": "",
                "run": 1,
                "recommendation": "",
                "complaint": 1,
                "survey": 1,
                "webhook": 1,
                "delivery": 1,
                "holdings_import": 1,
                "benefit_use": 1,
                "manager_run": 1,
                "contact": 1,
                "task": 1,
                "ranker_model": 1,
            }
        )
    )
    assert served - listed == set(), "list a valid request for each new route in CALLS"
    assert listed - served == set()


@pytest.fixture
async def seed(client, as_role, session, test_settings) -> dict:
    """A customer AC1 with holdings and served recommendations, a survey and a complaint, the wealth policy active
    (version 1) with a draft version 2 and an override, a finished tier run, a spare key to revoke."""
    admin, integration, app = as_role("admin"), as_role("integration"), as_role("app")
    await add_products(session)
    spare, _ = await apikeys_service.create_api_key(session, "spare", "app", test_settings.api_key_pepper)
    await session.commit()

    async def ok(request, status: int = 200):
        response = await request
        assert response.status_code == status, response.text
        return response

    await ok(
        client.post(
            "/v1/tier-policies", headers=admin, json={"policy_key": "wealth", "name": "Wealth", "tiers": WEALTH_TIERS}
        ),
        201,
    )
    await ok(client.post("/v1/tier-policies/wealth/versions/1/activate", headers=admin))
    await ok(client.put("/v1/attributes/custom/acc_flag", headers=admin, json={"type": "boolean"}))
    await ok(client.post("/v1/tier-policies/wealth/versions", headers=admin, json={"copy_from": 1}), 201)
    etag = (await ok(client.get("/v1/tier-policies/wealth/versions/2", headers=admin))).headers["ETag"]
    await ok(client.put("/v1/customers/AC1", headers=integration, json=customer_body()), 201)
    await ok(client.put("/v1/products/equity_fund/quota", headers=admin, json={"period": "month", "cap_count": 100}))
    await ok(
        client.put(
            "/v1/customers/AC1/holdings",
            headers=integration,
            json={
                "holdings": [
                    {"product_code": "savings_account", "balance": "60000.00", "as_of": date.today().isoformat()}
                ]
            },
        )
    )
    await ok(
        client.put(
            "/v1/customers/AC1/tiers/wealth/override",
            headers=admin,
            json={"tier": "private", "reason": "approved by the RM lead"},
        )
    )
    served = (await ok(client.get("/v1/customers/AC1/recommendations", headers=app))).json()
    occurred = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    survey = await ok(
        client.post(
            "/v1/feedback/surveys",
            headers=app,
            json={
                "event_id": "acc-s-1",
                "customer_id": "AC1",
                "kind": "nps",
                "score": 3,
                "comment": "slow",
                "channel": "mobile",
                "touchpoint": "app_rating_prompt",
                "occurred_at": occurred,
            },
        ),
        201,
    )
    webhook = await ok(
        client.post(
            "/v1/webhooks",
            headers=admin,
            json={"url": "http://127.0.0.1:9/hooks", "event_types": ["complaint.status_changed"]},
        ),
        201,
    )
    complaint = await ok(
        client.post(
            "/v1/feedback/complaints",
            headers=app,
            json={
                "event_id": "acc-c-1",
                "customer_id": "AC1",
                "category": "fees",
                "channel": "phone",
                "description": "A fee",
            },
        ),
        201,
    )
    await ok(
        client.post(
            "/v1/benefits",
            headers=admin,
            json={
                "code": "acc-benefit",
                "kind": "service",
                "channels": ["mobile"],
                "texts": {"en": {"name": "Adviser"}},
                "attachments": [{"policy_key": "wealth", "tier": "private"}],
            },
        ),
        201,
    )
    use = await ok(client.post("/v1/customers/AC1/benefits/acc-benefit/uses", headers=app, json={}), 201)
    run = await ok(client.post("/v1/tier-runs", headers=admin, json={"all": True}), 202)
    holdings_import = await ok(
        client.post(
            "/v1/holdings/import",
            content=HOLDINGS_IMPORT["content"],
            headers={**HOLDINGS_IMPORT["headers"], **integration},
        ),
        201,
    )
    referral = await seed_engagement(ok, client, admin)
    manager_run, contact, task = await seed_managers(ok, client, admin, session)
    await session.execute(FAN_OUT, {"batch": 100})  # the complaint's event becomes the webhook's delivery
    delivery = await session.scalar(text("SELECT id FROM webhook_delivery ORDER BY id LIMIT 1"))
    ranker_models = [  # two registered versions (their bytes are not read by these routes): one retired, one serving
        await session.scalar(
            text(
                "INSERT INTO ranker_model (status, trained_by, window_from, window_until, seed, features, products, "
                "metrics, model, model_sha256, served_at) VALUES (:status, 'test', '2026-01-01', '2026-06-01', 7, "
                "'[]', '[]', '{}', '\\x00', repeat('0', 64), now()) RETURNING version"
            ),
            {"status": status},
        )
        for status in ("retired", "serving")
    ]
    await session.commit()
    return {
        "spare_key": spare.id,
        "etag": etag,
        "run": run.json()["id"],
        "complaint": complaint.json()["id"],
        "survey": survey.json()["id"],
        "recommendation": served["items"][0]["recommendation_id"],
        "webhook": webhook.json()["id"],
        "delivery": delivery,
        "holdings_import": holdings_import.json()["id"],
        "benefit_use": use.json()["id"],
        "referral": referral,
        "manager_run": manager_run,
        "contact": contact,
        "task": task,
        "ranker_model": ranker_models[0],
    }


async def seed_engagement(ok, client, admin) -> int:
    """An open community ac-club and an activity ac_salon, with AC1 invited to both; AC1's referral of a code
    (its id returned) and AC2, the customer it can resolve to."""
    club = {"key": "ac-club", "name": "Club", "owner_team": "t", "audience": {"always": True}, "state": "open"}
    await ok(client.post("/v1/communities", headers=admin, json=club), 201)
    body = {"customer_ids": ["AC1"], "channel": "mobile"}
    await ok(client.post(f"{COMMUNITY}/invitations", headers=admin, json=body))
    salon = {
        "key": "ac_salon",
        "name": "Salon",
        "kind": "salon",
        "owner_team": "t",
        "audience": {"always": True},
        "channel": "branch",
        "capacity": 10,
        **activity_schedule(datetime.now(UTC)),
    }
    await ok(client.post("/v1/activities", headers=admin, json=salon), 201)
    await ok(client.post(f"{ACTIVITY}/invitations", headers=admin, json=body))
    await ok(client.put("/v1/customers/AC2", headers=admin, json=customer_body()), 201)
    referral = {
        "event_id": "acc-ref-1",
        "referrer_customer_id": "AC1",
        "referral_code": "ACC-CODE-1",
        "referred_at": datetime.now(UTC).isoformat(),
    }
    return (await ok(client.post("/v1/referrals", headers=admin, json=referral), 201)).json()["id"]


async def test_each_role_gets_the_success_status_of_its_scopes_and_403_for_the_rest(client, keys, seed, connection):
    table, wrong = calls(seed), []
    for method, path, scope in ROUTES:
        call = table[(method, path)]
        url = call.url or re.sub(r"\{(\w+)\}", lambda m: DEFAULT_PATH_VALUES[m.group(1)], path)
        for role in (None, *ROLE_SCOPES):
            kwargs = dict(call.kwargs)
            kwargs["headers"] = {**kwargs.get("headers", {}), **({"X-API-Key": keys[role]} if role else {})}
            expected = 401 if role is None else call.status if scope in ROLE_SCOPES[role] else 403
            attempt = await connection.begin_nested()  # each call sees the seed alone
            try:
                response = await client.request(method, url, **kwargs)
            finally:
                await attempt.rollback()
            if response.status_code != expected or (
                expected >= 400 and response.headers["content-type"] != "application/problem+json"
            ):
                wrong.append(
                    f"{method} {path} as {role}: {response.status_code}, expected {expected}: {response.text[:200]}"
                )
    assert wrong == []


def test_erasure_listing_and_complaint_handling_belong_to_the_admin():
    """Least privilege: the integration feeds may not erase, the mobile backend may not list customers, read
    survey comments or complaints, or move complaints; erasure is a scope of its own."""
    assert Scope.CUSTOMERS_ERASE not in ROLE_SCOPES["integration"]
    for scope in (
        Scope.CUSTOMERS_LIST,
        Scope.FEEDBACK_READ,
        Scope.COMPLAINTS_WRITE,
        Scope.TRANSITIONS_READ,
        Scope.CUSTOMERS_ERASE,
    ):
        assert scope not in ROLE_SCOPES["app"], scope
        assert scope in ROLE_SCOPES["admin"]
    assert {
        d.dependency.required_scope
        for r in ROUTERS
        for route in r.routes
        if route.path == "/v1/customers/{customer_id}" and "DELETE" in route.methods
        for d in route.dependencies
    } == {Scope.CUSTOMERS_ERASE}


async def test_a_role_is_given_erasure_only_explicitly(client, sessionmaker, session, as_role, keys, test_settings):
    await client.put("/v1/customers/GR1", headers=as_role("integration"), json=customer_body())
    assert (await client.delete("/v1/customers/GR1", headers=as_role("integration"))).status_code == 403
    granted = create_app(
        test_settings.model_copy(update={"role_grants": {"integration": ["customers:erase"]}}),
        sessionmaker=sessionmaker,
    )
    import httpx

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=granted), base_url="http://t") as other:
        assert (await other.delete("/v1/customers/GR1", headers=as_role("integration"))).status_code == 204
        assert (await other.get("/v1/customers", headers=as_role("integration"))).status_code == 403
    with pytest.raises(ValueError, match="customers:wipe"):
        role_scopes({"integration": ["customers:wipe"]})
