"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis): positive and negative
cases for every operation, sent as admin to a seeded database, each in a rolled-back transaction.

Every response must: not be a 5xx, conform to the documented status codes, content types, headers and schemas,
and every 4xx must be application/problem+json. Invalid input must be rejected.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.specs.openapi import checks as openapi_checks

from app.core.config import Settings
from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.hardening.loop_app import RolledBackApp

# A deeper run, by hand: TIERWISE_FUZZ_EXAMPLES=100, and TIERWISE_FUZZ_COVERAGE=1 for the boundary cases.
EXAMPLES_PER_OPERATION = int(os.environ.get("TIERWISE_FUZZ_EXAMPLES", "12"))
FUZZ_SETTINGS = Settings(environment="test", database_url=None, api_key_pepper="fuzz-pepper-0123456789")

# Examples from the document, then generated cases (positive and negative). The coverage phase is off unless asked
# for: it builds tens of thousands of boundary cases at collection time, minutes of work for this suite.
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {
            "coverage": {"enabled": os.environ.get("TIERWISE_FUZZ_COVERAGE") == "1"},
            "stateful": {"enabled": False},
        },
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
    }
)
schemathesis.serializer.alias("application/x-ndjson", "text/plain")  # the customer import: lines of JSON
schema = schemathesis.openapi.from_dict(create_app(FUZZ_SETTINGS).openapi(), config=CONFIG)

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]

# Batch intake that validates each item on its own and answers 200 with per-item rejections (a documented design:
# one bad event must not sink a mobile app's whole batch); the rest of the checks still apply to them.
PER_ITEM_VALIDATION = {"POST /v1/feedback/events", "POST /v1/customers/import"}

STATS = {"operations": set(), "cases": 0}


async def _seed(session) -> None:
    """A bank with the default catalog and policies and a few customers, so fuzzed ids sometimes hit."""
    from app.demo import generate_demo_bank, load_default_products
    from app.tiering.policies import load_default_policies

    await load_default_products(session)
    await load_default_policies(session)
    await generate_demo_bank(session, 20, seed=3)


@pytest.fixture(scope="module")
def fuzz_app(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    target = RolledBackApp(url, FUZZ_SETTINGS)
    target.seed(_seed)
    yield target
    target.close()
    print(f"\nfuzz: {len(STATS['operations'])} operations, {STATS['cases']} cases")


def _kwargs_for_httpx(case) -> dict:
    kwargs = case.as_transport_kwargs(base_url="http://tierwise.test")
    kwargs.pop("cookies", None)
    kwargs["headers"].pop("X-API-Key", None)  # the runner sends a real admin key unless the case dropped it
    if "data" in kwargs and isinstance(kwargs["data"], (bytes, str)):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


def generated(examples: int) -> settings:
    """Hypothesis' settings for a schemathesis test: `examples` per operation, the documented examples first, the
    same cases on every run (derandomized, no example database), no deadline or health check."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


@schema.parametrize()
@generated(EXAMPLES_PER_OPERATION)
def test_api_survives_generated_requests(fuzz_app, case):
    STATS["operations"].add(f"{case.method} {case.path}")
    STATS["cases"] += 1

    response = fuzz_app.request("admin", **_kwargs_for_httpx(case), with_key="X-API-Key" in case.headers)
    operation = f"{case.method.upper()} {case.path}"
    excluded = [openapi_checks.negative_data_rejection] if operation in PER_ITEM_VALIDATION else []
    case.validate_response(response, checks=CHECKS, excluded_checks=excluded)
    if 400 <= response.status_code < 500:
        assert response.headers["content-type"] == "application/problem+json", response.text
