"""The lean bulk read's document written by Postgres (app/tiering/assignment/lean_json.py) is, byte for byte, the
document the schema's serializer writes for the same customers (each single lean read, the Python path): on a
demo bank under the default policies, with overrides (applying, expired, with and without an end, with a
fraction of a second), downgrades pending (at risk, in grace), customers with no tier, erased and unknown ones,
every language's fallback and policy filters."""

import re
from contextlib import nullcontext

from sqlalchemy import text

from app.core.db import driver_connection
from app.customers.errors import CustomerNotFound
from app.demo import generate_demo_bank
from app.tiering.assignment import reads
from app.tiering.assignment.lean_json import customers_tiers_lean_json
from app.tiering.assignment.refresh import refresh_tiers
from app.tiering.assignment.schemas import CustomerTiersBulk
from app.tiering.policies import load_default_policies


async def _demo(session) -> list[str]:
    await generate_demo_bank(session, 240, seed=11)
    await load_default_policies(session)
    ids = list(await session.scalars(text("SELECT id FROM customer ORDER BY id")))
    await refresh_tiers(session, ids, id_range=None)
    # every kind of tier the document shows, written onto the stored assignments as their own routes would
    await session.execute(
        text("""
        UPDATE tier_assignment a SET lower_since = now() - interval '3 days 7 hours 0.25 seconds',
               qualified_code = 'mass'
        FROM tier_policy p WHERE p.id = a.policy_id AND p.key = 'wealth' AND a.customer_id % 7 = 0""")
    )
    await session.execute(
        text("""
        UPDATE tier_assignment a SET override_code = 'private', override_rank = 40, override_actor = 'rm-7',
               override_reason = 'Held: "transfer" of 12M \\ due
next month',
               override_expires_at = CASE a.customer_id % 3 WHEN 0 THEN NULL
                   WHEN 1 THEN now() + interval '40 days' ELSE now() - interval '1 day' END,
               since = date_trunc('second', a.since)
        FROM tier_policy p WHERE p.id = a.policy_id AND p.key = 'wealth' AND a.customer_id % 5 = 0""")
    )
    await session.execute(text("DELETE FROM tier_assignment WHERE customer_id % 11 = 0"))  # no tier at all
    await session.execute(text("DELETE FROM tier_assignment WHERE customer_id % 13 = 0 AND policy_id % 2 = 0"))
    erased = await session.scalar(text("SELECT external_id FROM customer ORDER BY id DESC LIMIT 1"))
    await session.execute(text("UPDATE customer SET erased_at = now() WHERE external_id = :id"), {"id": erased})
    external_ids = list(await session.scalars(text("SELECT external_id FROM customer ORDER BY id")))
    return [*external_ids, "NOBODY"]


async def _single_reads(connection, session, external_ids, asked) -> bytes:
    """The CustomerTiersBulk document built from each customer's single lean read (the schema's serializer)."""
    items = []
    for external_id in external_ids:
        try:
            single = await reads.customer_tiers_json(connection, lambda: nullcontext(session), external_id, asked)
        except CustomerNotFound:
            items.append(b'{"customer_id":"' + external_id.encode() + b'","found":false,"tiers":[]}')
            continue
        head = b'{"customer_id":"' + external_id.encode() + b'",'
        assert single.startswith(head)
        items.append(head + b'"found":true,' + single[len(head) :])
    return b'{"items":[' + b",".join(items) + b"]}"


async def test_postgres_writes_the_serializers_bytes(session):
    external_ids = await _demo(session)
    connection = await driver_connection(session)
    kinds = await session.execute(
        text("""
        SELECT count(*) FILTER (WHERE lower_since IS NOT NULL), count(*) FILTER (WHERE tier_override_applies(a)),
               count(*) FILTER (WHERE override_code IS NOT NULL AND NOT tier_override_applies(a)),
               count(*) FILTER (WHERE tier_override_applies(a) AND override_expires_at IS NULL),
               count(DISTINCT policy_id)
        FROM tier_assignment a""")
    )
    at_risk, overridden, expired, open_ended, policies = kinds.one()
    assert at_risk and overridden and expired and open_ended and policies >= 4
    sizes = set()
    for language, default in (("en", "en"), ("zh-CN", "en"), ("zh", "en"), ("fr", "zh-CN"), ("en", "zh-CN")):
        for keys in (None, ["wealth"], ["loyalty", "wealth"], ["nosuch"]):
            asked = reads.TiersAsked(keys, False, language, default)
            for chunk in (external_ids, external_ids[50:51], [external_ids[-1], external_ids[0], external_ids[3]]):
                built = await customers_tiers_lean_json(connection, chunk, keys, language, default)
                expected = await _single_reads(connection, session, chunk, asked)
                assert built == expected, (language, default, keys, chunk[:3])
                sizes.add(len(built))
            document = CustomerTiersBulk.model_validate_json(built)
            assert document.model_dump_json().encode() == built
    whole = (await customers_tiers_lean_json(connection, external_ids, None, "zh-CN", "en")).decode()
    assert "私人银行" in whole and '"at_risk":true' in whole and '"override":{"tier":"private"' in whole
    assert '"found":false,"tiers":[]' in whole and '"expires_at":null' in whole
    assert re.search(r'"expires_at":"[-0-9T:]+\.[0-9]{6}Z"', whole) and re.search(r'"since":"[-0-9T:]+Z"', whole)
    assert len(sizes) > 4  # documents of every shape were compared, not one repeated


async def test_bulk_route_sends_the_postgres_document(client, as_role, session):
    external_ids = await _demo(session)
    await session.commit()
    headers = {**as_role("app"), "Accept-Language": "zh-CN"}
    body = {"customer_ids": [*external_ids[:40], external_ids[3]], "policy_key": ["wealth", "loyalty"]}
    response = await client.post("/v1/customers/tiers:read", headers=headers, json=body)
    assert response.status_code == 200 and response.headers["content-language"] == "zh-CN"
    connection = await driver_connection(session)
    asked = reads.TiersAsked(["wealth", "loyalty"], False, "zh-CN", "en")
    assert response.content == await _single_reads(connection, session, external_ids[:40], asked)
