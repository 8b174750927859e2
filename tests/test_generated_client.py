"""An integrator's view: a Python client generated from the exported openapi/openapi.json with openapi-python-client
(no warning allowed), driving a live uvicorn on loopback through a short flow, errors parsed into typed Problems."""

import asyncio
import importlib
import io
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from app.core.migrations import upgrade_to_head
from bench.harness import create_key, plain_dsn, serve

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = shutil.which(
    "openapi-python-client", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
pytestmark = pytest.mark.skipif(
    GENERATOR is None, reason="openapi-python-client is not installed (a dev dependency: `make install` installs it)"
)


async def _seed(database_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.core.db import create_sessionmaker
    from app.demo import load_default_products
    from app.tiering.policies import load_default_policies

    engine = create_async_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_products(session)
            await load_default_policies(session)
            await session.commit()
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def client_package(tmp_path_factory):
    """The generated package, importable as `tierwise_client`."""
    out = tmp_path_factory.mktemp("generated")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(out)}  # else platformdirs warns about its absence, not the spec
    result = subprocess.run(
        [
            GENERATOR,
            "generate",
            "--path",
            str(ROOT / "openapi" / "openapi.json"),
            "--meta",
            "none",
            "--output-path",
            str(out / "tierwise_client"),
            "--config",
            str(ROOT / "openapi" / "openapi-python-client.yaml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    printed = result.stdout + result.stderr
    assert result.returncode == 0, printed
    assert "warning" not in printed.lower() and "error" not in printed.lower(), printed
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("tierwise_client")
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n == "tierwise_client" or n.startswith("tierwise_client.")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def live(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    asyncio.run(_seed(url))
    dsn = plain_dsn(url)
    key = asyncio.run(create_key(dsn, "admin"))
    with serve(dsn) as base:
        yield base, key


def test_generated_client_runs_the_integration_flow_with_typed_errors(client_package, live):
    from tierwise_client import AuthenticatedClient, models
    from tierwise_client.api.customers import get_customer, replace_holdings, upsert_customer
    from tierwise_client.api.feedback import ingest_feedback_events
    from tierwise_client.api.recommendations import get_recommendations
    from tierwise_client.api.reports import tier_distribution
    from tierwise_client.api.tiers import get_customer_tiers

    base, key = live
    api = AuthenticatedClient(
        base_url=base, token=key, prefix="", auth_header_name="X-API-Key", raise_on_unexpected_status=True
    )
    now = datetime.now(UTC).replace(microsecond=0)
    with api:
        created = upsert_customer.sync_detailed(
            "GEN-0001",
            client=api,
            body=models.CustomerUpsert(
                segment=models.Segment.RETAIL,
                onboarded_at=now - timedelta(days=3000),
                birth_date=date(1979, 4, 12),
                risk_level=4,
                risk_assessed_at=now - timedelta(days=10),
                marketing_consent=True,
            ),
        )
        assert created.status_code == 201 and isinstance(created.parsed, models.CustomerRead)
        assert created.parsed.segment == models.Segment.RETAIL

        holdings = replace_holdings.sync(
            "GEN-0001",
            client=api,
            body=models.HoldingsPut(
                holdings=[
                    models.HoldingIn(product_code="current_account", balance="8450.2", as_of=date.today()),
                    models.HoldingIn(product_code="term_deposit_12m", balance="650000.00", as_of=date.today()),
                ]
            ),
        )
        assert isinstance(holdings, models.HoldingsRead)
        assert sorted(h.balance for h in holdings.holdings) == ["650000.00", "8450.20"]

        tiers = get_customer_tiers.sync("GEN-0001", client=api)
        assert isinstance(tiers, models.CustomerTiers) and tiers.tiers
        wealth = next(t for t in tiers.tiers if t.policy_key == "wealth")
        assert all(isinstance(c, models.ConditionResult) for e in wealth.explanation for c in e.conditions)

        offers = get_recommendations.sync("GEN-0001", client=api, channel=models.Channel.MOBILE, explain=True)
        assert isinstance(offers, models.RecommendationsRead) and offers.items
        first = offers.items[0]
        assert all(reason.code is not None for reason in first.reasons)
        assert all(isinstance(f.filter_, models.FilterReason) for f in offers.filtered_out)

        feedback = ingest_feedback_events.sync(
            client=api,
            body=models.FeedbackEventBatch(
                events=[
                    models.FeedbackEventIn(
                        event_id="gen-fb-1",
                        recommendation_id=first.recommendation_id,
                        customer_id="GEN-0001",
                        type_=models.FeedbackEventType.IMPRESSION,
                        occurred_at=now,
                    )
                ]
            ),
        )
        assert isinstance(feedback, models.FeedbackBatchResult) and feedback.accepted == 1

        report = tier_distribution.sync(client=api, policy_key="wealth")
        assert isinstance(report, models.TierDistribution) and report.customers >= 1
        assert re.fullmatch(r"[0-9]+\.[0-9]{2}", report.aum), report.aum  # money: a decimal string

        missing = get_customer.sync_detailed("NO-SUCH-CUSTOMER", client=api)
        assert missing.status_code == 404 and isinstance(missing.parsed, models.Problem)
        assert missing.parsed.status == 404 and missing.parsed.title == "Not found"

        refused = replace_holdings.sync_detailed(
            "GEN-0001",
            client=api,
            body=models.HoldingsPut(
                holdings=[models.HoldingIn(product_code="no_such_product", balance="1.00", as_of=date.today())]
            ),
        )
        assert refused.status_code == 422 and isinstance(refused.parsed, models.Problem)
        assert refused.parsed.errors[0].pointer == "/holdings/0/product_code"


def test_generated_client_sends_the_ndjson_import(client_package, live):
    from tierwise_client import AuthenticatedClient
    from tierwise_client.api.customers import import_customers
    from tierwise_client.models import ImportResult
    from tierwise_client.types import File

    base, key = live
    lines = (
        b'{"customer_id": "GEN-IMP-1", "segment": "retail", "onboarded_at": "2020-01-15T00:00:00Z"}\n'
        b'{"customer_id": "GEN-IMP-2", "segment": "martian", "onboarded_at": "2020-01-15T00:00:00Z"}\n'
    )
    with AuthenticatedClient(base_url=base, token=key, prefix="", auth_header_name="X-API-Key") as api:
        result = import_customers.sync(client=api, body=File(payload=io.BytesIO(lines)))
    assert isinstance(result, ImportResult) and (result.created, result.rejected) == (1, 1)
    assert result.rejections[0].pointer == "/segment"
