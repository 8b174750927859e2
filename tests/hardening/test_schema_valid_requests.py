"""The published constraints are the ones enforced: requests generated from the OpenAPI document in schemathesis's
positive mode (its examples, then data its schemas allow), sent as admin to a demo bank, each in a rolled-back
transaction. An operation that refuses every such request, with validation errors (400/422) among the refusals, is
one whose schema promises more than the service accepts: what `schemathesis run` reports as a schema validation
mismatch. Refusals that only name missing data (404: no such customer, policy or complaint) are not that."""

from collections import defaultdict

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.hardening.loop_app import RolledBackApp
from tests.hardening.test_fuzz import FUZZ_SETTINGS, _kwargs_for_httpx

EXAMPLES_PER_OPERATION = 15
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "mode": "positive"},
    }
)
schema = schemathesis.openapi.from_dict(create_app(FUZZ_SETTINGS).openapi(), config=CONFIG)
STATUSES: dict[str, list[int]] = defaultdict(list)


async def _demo_bank(session) -> None:
    """What the documented examples name: demo customers (C00000042 among them), the default catalog and
    policies, the custom attribute `employer_payroll` and a webhook subscription."""
    from app.demo import generate_demo_bank, load_default_products
    from app.rules import custom_attributes
    from app.tiering.policies import load_default_policies
    from app.webhooks import service as webhooks_service
    from app.webhooks.schemas import WebhookCreate

    await load_default_products(session)
    await load_default_policies(session)
    await generate_demo_bank(session, 50, seed=5)
    await custom_attributes.put_attribute_definition(session, "employer_payroll", "boolean", "", None)
    await webhooks_service.create_subscription(
        session,
        WebhookCreate(  # webhook 1, as the examples name it
            url="http://127.0.0.1:9/hooks", event_types=["tier.upgraded"]
        ),
        FUZZ_SETTINGS,
    )
    await _engagement(session)


async def _engagement(session) -> None:
    """The demo bank's programmes are those the examples name (young-families, salon_year_end); a referral 1."""
    from datetime import UTC, datetime, timedelta

    from app.engagement import referrals
    from app.engagement.schemas import ReferralIn

    await referrals.record_referral(
        session,
        ReferralIn(
            event_id="ref-1",
            referrer_customer_id="C00000042",
            referral_code="FRIEND-7QX2",
            referred_at=datetime.now(UTC) - timedelta(days=30),
        ),
    )


@pytest.fixture(scope="module")
def bank(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    target = RolledBackApp(url, FUZZ_SETTINGS)
    target.seed(_demo_bank)
    yield target
    target.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_schema_valid_request_is_answered(bank, case):
    response = bank.request("admin", **_kwargs_for_httpx(case), with_key=True)
    STATUSES[f"{case.method.upper()} {case.path}"].append(response.status_code)
    assert response.status_code < 500, response.text


def test_no_operation_refuses_everything_its_schema_allows():
    assert len(STATUSES) == len(list(schema.get_all_operations())), "run with the parametrized test above"
    mismatched = {
        operation: sorted(set(statuses))
        for operation, statuses in STATUSES.items()
        if all(400 <= status < 500 for status in statuses)
        and sum(status in (400, 422) for status in statuses) >= 0.1 * len(statuses)
    }
    assert mismatched == {}
