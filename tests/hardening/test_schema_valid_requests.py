"""The published constraints are the ones enforced: requests generated from the OpenAPI document in schemathesis's
positive mode (its examples, then data its schemas allow), sent as admin to a demo bank, each in a rolled-back
transaction. An operation that refuses every such request, with validation errors (400/422) among the refusals, is
one whose schema promises more than the service accepts: what `schemathesis run` reports as a schema validation
mismatch. Refusals that only name missing data (404: no such customer, policy or complaint) are not that."""

import pytest
import schemathesis

from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.hardening.loop_app import RolledBackApp
from tests.hardening.test_fuzz import FUZZ_SETTINGS, _kwargs_for_httpx, generated

EXAMPLES_PER_OPERATION = 15
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "mode": "positive"},
    }
)
schema = schemathesis.openapi.from_dict(create_app(FUZZ_SETTINGS).openapi(), config=CONFIG)


async def _demo_bank(session) -> None:
    """What the documented examples name: demo customers (C00000042 among them) with their tiers, the default
    catalog, policies and benefits, the custom attribute `employer_payroll`, API key 3 (not the caller's), webhook 1
    with a dead delivery 1, survey answer 7, complaint 42 (open), tier run 17, holdings import 7, a draft version 2
    of the wealth policy, and C00000042 in the wealth tier (an override) with a use 1 of airport-lounge."""
    from sqlalchemy import select, text

    from app.apikeys import service as apikeys_service
    from app.benefits.service import load_default_benefits
    from app.benefits.uses import record_use
    from app.demo import generate_demo_bank, load_default_products
    from app.feedback import complaints as feedback_complaints
    from app.feedback import service as feedback_service
    from app.feedback.schemas import ComplaintIn, SurveyIn
    from app.rules import custom_attributes
    from app.tiering.assignment.overrides import set_override
    from app.tiering.assignment.refresh import refresh_tiers
    from app.tiering.models import TierPolicy
    from app.tiering.policies import add_version, load_default_policies
    from app.tiering.schemas import TierPolicyVersionCreate
    from app.webhooks import service as webhooks_service
    from app.webhooks.schemas import WebhookCreate

    await load_default_products(session)
    await load_default_policies(session)
    await generate_demo_bank(session, 50, seed=5)
    ids = list(await session.scalars(text("SELECT id FROM customer ORDER BY id")))
    await refresh_tiers(session, ids, id_range=None)
    await load_default_benefits(session)  # airport-lounge, as the examples name it
    await custom_attributes.put_attribute_definition(session, "employer_payroll", "boolean", "", None)
    for n in range(1, 4):  # keys 1 to 3: each request then makes its own, later ids
        await apikeys_service.create_api_key(session, f"example-{n}", "integration", FUZZ_SETTINGS.api_key_pepper)
    await webhooks_service.create_subscription(
        session,
        WebhookCreate(  # webhook 1, as the examples name it
            url="http://127.0.0.1:9/hooks", event_types=["tier.upgraded"]
        ),
        FUZZ_SETTINGS,
    )
    await session.execute(
        text(
            "WITH e AS (INSERT INTO webhook_event (event_type, customer_id, payload, fanned_out_at) "
            "SELECT 'tier.upgraded', min(id), '{}'::jsonb, now() FROM customer RETURNING id, customer_id) "
            "INSERT INTO webhook_delivery (id, subscription_id, event_id, customer_id, state, attempts, finished_at) "
            "SELECT 1, 1, e.id, e.customer_id, 'dead', 12, now() FROM e"
        )
    )
    await session.execute(text("SELECT setval(pg_get_serial_sequence('survey_response', 'id'), 6)"))
    await feedback_service.record_survey(session, SurveyIn(**SurveyIn.model_json_schema()["examples"][0]))  # 7
    await session.execute(text("SELECT setval(pg_get_serial_sequence('complaint', 'id'), 41)"))
    complaint = ComplaintIn(**ComplaintIn.model_json_schema()["examples"][0])
    await feedback_complaints.open_complaint(session, complaint, "seed")
    await session.execute(
        text(
            "INSERT INTO tier_run (id, requested_by, total, status, finished_at) "
            "VALUES (17, 'seed', 50, 'succeeded', now())"
        )
    )
    await session.execute(
        text(
            "INSERT INTO holding_import (id, digest, format, status, requested_by, finished_at) "
            "VALUES (7, repeat('0', 64), 'ndjson', 'succeeded', 'seed', now())"
        )
    )
    customer = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'C00000042'"))
    wealth = await session.scalar(select(TierPolicy).where(TierPolicy.key == "wealth"))
    await set_override(session, customer, wealth, "wealth", "seed", None, "seed")  # entitled to airport-lounge
    await record_use(session, "C00000042", "airport-lounge", "mobile")  # use 1
    for table, last in (("tier_run", 17), ("webhook_delivery", 1), ("holding_import", 7)):  # the ids given above
        await session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {last})"))
    await add_version(session, "wealth", TierPolicyVersionCreate(copy_from=1), "seed")
    await _engagement(session)
    await session.execute(  # ranker model versions 1 (retired: the example, and what a rollback serves) and 2
        text(
            "INSERT INTO ranker_model (version, status, trained_by, window_from, window_until, seed, features, "
            "products, metrics, model, model_sha256, served_at) SELECT v, s, 'seed', '2026-01-01', '2026-06-01', 7, "
            "'[]', '[]', '{}', '\\x00', repeat('0', 64), now() FROM (VALUES (1, 'retired'), (2, 'serving')) t(v, s)"
        )
    )
    await _managers(session)


async def _managers(session) -> None:
    """Managers RM001 and RM002 (as the examples name them) serving the wealth tiers, run 1 giving C00000042 one,
    a contact 1 with C00000042, an open task 1 of theirs and the care calendar's holiday mid-autumn-2027."""
    from sqlalchemy import text

    from app.managers import service as managers_service
    from app.managers.schemas import ContactCreate, ManagerCreate

    for manager_id in ("RM001", "RM002"):
        body = ManagerCreate.model_json_schema()["examples"][0] | {"manager_id": manager_id, "capacity": 100}
        await managers_service.create_manager(session, ManagerCreate.model_validate(body))
    await managers_service.run_assignment(session, "seed")  # run 1
    contact = ContactCreate.model_validate(ContactCreate.model_json_schema()["examples"][0])
    await managers_service.record_contact(session, "C00000042", contact, "seed")  # contact 1
    await session.execute(
        text(
            "INSERT INTO manager_task (id, customer_id, kind, period, reason, due_on) "
            "SELECT 1, id, 'cadence_overdue', 'seed', 'seed', current_date FROM customer "
            "WHERE external_id = 'C00000042'"
        )
    )
    await session.execute(text("SELECT setval(pg_get_serial_sequence('manager_task', 'id'), 1)"))
    from app.managers import rules
    from app.managers.rule_schemas import HolidayCreate

    holiday = {"holiday_key": "mid-autumn-2027", "name": "Mid-Autumn Festival", "date": "2027-09-15"}
    await rules.create_holiday(session, HolidayCreate.model_validate(holiday))  # as the path's example names it


async def _engagement(session) -> None:
    """The demo bank's programmes are those the examples name (young-families, pensions_explained), with
    C00000042 invited to both; a referral 1."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import text

    from app.engagement import referrals
    from app.engagement.schemas.referrals import ReferralIn

    for table, key, programme in (
        ("community_membership", "community", "young-families"),
        ("activity_participation", "activity", "pensions_explained"),
    ):  # C00000042 invited to the programmes the examples name (the demo's own invitations are random)
        await session.execute(
            text(
                f"INSERT INTO {table} ({key}_id, customer_id, state, channel, invited_at) "
                f"SELECT p.id, c.id, 'invited', 'mobile', now() FROM {key} p, customer c "
                "WHERE p.key = :programme AND c.external_id = 'C00000042' ON CONFLICT DO NOTHING"
            ),
            {"programme": programme},
        )
    await referrals.record_referral(
        session,
        ReferralIn(
            event_id="ref-1",
            referrer_customer_id="C00000042",
            referral_code="FRIEND-7QX2",
            referred_at=datetime.now(UTC) - timedelta(days=30),
        ),
    )


ETAGS: dict[str, str] = {}


def _with_valid_data(bank, case) -> None:
    """What the document cannot name before the data exists, given as schemathesis's hooks would: the care
    calendar's policy and tier (free text, where a random string names no policy), and an edit of the seeded draft
    (version 2; version 1 is active, which only a new version changes) with the draft's current ETag as If-Match."""
    operation = f"{case.method.upper()} {case.path}"
    if operation == "GET /v1/care-calendar":
        case.query = {**(case.query or {}), "policy_key": "wealth", "tier": "wealth"}
    elif (
        operation == "PUT /v1/tier-policies/{policy_key}/versions/{version}"
        and case.path_parameters.get("policy_key") == "wealth"
    ):
        case.path_parameters = {**case.path_parameters, "version": 2}
        if "draft" not in ETAGS:
            ETAGS["draft"] = bank.request("admin", method="GET", url="/v1/tier-policies/wealth/versions/2").headers[
                "etag"
            ]
        case.headers = {**(case.headers or {}), "If-Match": ETAGS["draft"]}


@pytest.fixture(scope="module")
def bank(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    target = RolledBackApp(url, FUZZ_SETTINGS)
    target.seed(_demo_bank)
    yield target
    target.close()


# Operations whose every schema-valid request is well formed: any refusal names missing data or state (404, 409,
# 412), never the request (400, 422): webhook subscriptions (event types an enum, the URL a pattern, PATCH fields not
# nullable) and a community member's move (`removed` is not one).
WELL_FORMED = {
    "POST /v1/webhooks",
    "PATCH /v1/webhooks/{webhook_id}",
    "POST /v1/communities/{community_key}/members/{customer_id}/transitions",
}


# Refusals relative to the clock, which no schema can state ("now" moves): a move's `at` in the future.
RELATIVE_TO_NOW = ("must not be in the future",)


def refusals_of(operation: str, answers: list[tuple[int, str]]) -> list[str]:
    """What is wrong with one operation's answers to every request generated for it (empty when nothing is):
    - it refuses them all, with validation errors (400/422) among a tenth or more of the refusals: what
      `schemathesis run` reports as a schema validation mismatch (its schema promises more than it accepts);
    - it refuses them all in any way: schemathesis's `missing test data` (the examples name nothing that exists)
      or a mismatch (a 409 or 428 included);
    - a well-formed operation (WELL_FORMED) refuses one as malformed (400/422);
    - a list refuses a cursor its published pattern allows (app/core/pagination.py)."""
    statuses = [status for status, _ in answers]
    malformed = [text for status, text in answers if status in (400, 422)]
    wrong = []
    if all(400 <= status < 500 for status in statuses):
        wrong.append(f"refuses every schema-valid request: {sorted(set(statuses))}")
        if len(malformed) >= 0.1 * len(statuses):
            wrong.append("with validation errors: its schema promises more than it accepts")
    if operation in WELL_FORMED:
        wrong += [text for text in malformed if not any(rule in text for rule in RELATIVE_TO_NOW)][:3]
    if operation.startswith("GET /v1/"):
        wrong += [text for text in malformed if '"parameter":"cursor"' in text][:3]
    return wrong


@pytest.fixture
def answers(request):
    """The status and problem details of each answer to one operation's generated requests, checked once all of them
    are sent (the check fails the operation's test at teardown). Each operation's test carries its own checks, so the
    suite can run over several pytest-xdist workers."""
    answered: list[tuple[int, str]] = []
    yield answered
    operation = request.node.name.partition("[")[2].removesuffix("]")
    wrong = refusals_of(operation, answered)
    assert not wrong, f"{operation}: {wrong}"


@schema.parametrize()
@generated(EXAMPLES_PER_OPERATION)
def test_schema_valid_request_is_answered(bank, answers, case):
    _with_valid_data(bank, case)
    response = bank.request("admin", **_kwargs_for_httpx(case), with_key=True)
    answers.append((response.status_code, response.text[:300] if response.status_code in (400, 422) else ""))
    assert response.status_code < 500, response.text


def test_the_checks_see_what_they_check():
    """The operations' checks above are not vacuous: every list is checked for its cursor, and each rule flags the
    answers it exists for."""
    lists = [op.ok().label for op in schema.get_all_operations() if op.ok().label.startswith("GET /v1/")]
    assert len(lists) > 25
    cursor = (422, '{"parameter":"cursor","detail":"not a cursor"}')
    assert refusals_of("GET /v1/customers", [(200, ""), cursor]) == [cursor[1]]
    assert refusals_of("GET /v1/customers", [(200, ""), (404, "")]) == []
    assert len(refusals_of("POST /v1/products", [(404, ""), (422, "bad")])) == 2
    assert len(refusals_of("POST /v1/products", [(404, "")] * 10)) == 1
    assert refusals_of("POST /v1/webhooks", [(201, ""), (422, "url")]) == ["url"]
    assert refusals_of("POST /v1/webhooks", [(201, ""), (422, "at must not be in the future")]) == []
    assert refusals_of("POST /v1/products", []) != []  # an operation none of whose requests was sent
