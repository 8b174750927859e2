"""The access log names the calling key (never the key itself); a W3C traceparent is honoured (its trace id in the
access log and in the response's traceparent, a new span id), an invalid one replaced by a new trace, and passed on
to webhook receivers with the events the request caused (tests/webhooks/test_trace_delivery.py)."""

import json
import logging
import re

import pytest

from app.core import tracing
from app.core.logging import JsonFormatter
from tests.tiering.test_assignment import make_customer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
VALID = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def _access(caplog) -> list[dict]:
    """The access log lines as production writes them (JSON)."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "tierwise.access"]


async def test_the_access_log_names_the_calling_key_and_never_the_key(client, as_role, keys, caplog):
    caplog.set_level(logging.INFO, logger="tierwise.access")
    routed = await client.get("/v1/products", headers=as_role("app"))
    assert routed.status_code == 200
    forbidden = await client.get("/v1/api-keys", headers=as_role("app"))  # a key without the scope: still named
    assert forbidden.status_code == 403
    anonymous = await client.get("/v1/products")
    assert anonymous.status_code == 401
    lines = _access(caplog)
    assert [(line["route"], line["status"], line["api_key"]) for line in lines] == [
        ("/v1/products", 200, "test-app"),
        ("/v1/api-keys", 403, "test-app"),
        ("/v1/products", 401, None),
    ]
    written = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert all(key not in written for key in keys.values())


async def test_hot_reads_name_the_key_too(client, as_role, wealth, caplog):
    await make_customer(client, as_role, "T1", "60000.00")
    caplog.set_level(logging.INFO, logger="tierwise.access")
    response = await client.get("/v1/customers/T1/tiers", headers=as_role("app"))
    assert response.status_code == 200
    [line] = _access(caplog)
    assert line["api_key"] == "test-app" and line["route"] == "/v1/customers/{customer_id}/tiers"


async def test_a_valid_traceparent_is_continued_in_the_response_and_the_log(client, caplog):
    caplog.set_level(logging.INFO, logger="tierwise.access")
    response = await client.get("/healthz", headers={"traceparent": INCOMING})
    trace_id, span_id, flags = VALID.fullmatch(response.headers["traceparent"]).groups()
    assert trace_id == TRACE_ID and flags == "01"
    assert span_id not in ("00f067aa0ba902b7", "0" * 16)  # this service's own span
    [line] = _access(caplog)
    assert line["trace_id"] == TRACE_ID


@pytest.mark.parametrize(
    "header",
    [
        "",
        "not a traceparent",
        f"00-{TRACE_ID.upper()}-00f067aa0ba902b7-01",  # upper-case hex
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",  # the forbidden version
        f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra",  # version 00 has nothing after the flags
        f"00-{TRACE_ID[:-1]}-00f067aa0ba902b7-01",  # too short
    ],
)
async def test_an_invalid_traceparent_is_replaced_by_a_new_trace(client, caplog, header):
    caplog.set_level(logging.INFO, logger="tierwise.access")
    response = await client.get("/healthz", headers={"traceparent": header} if header else {})
    trace_id, span_id, _ = VALID.fullmatch(response.headers["traceparent"]).groups()
    assert trace_id != TRACE_ID.lower() and trace_id != "0" * 32 and span_id != "0" * 16
    [line] = _access(caplog)
    assert line["trace_id"] == trace_id


def test_a_later_version_s_traceparent_is_understood():
    context = tracing.parse(f"01-{TRACE_ID}-00f067aa0ba902b7-01-what-comes-next")
    assert context is not None and context.trace_id == TRACE_ID
