"""The lean text each assignment stores (lean_tail, lean_override: the trigger tier_assignment_lean) stays in step
with every writer: the lean bulk read built from it is, byte for byte, the document of each customer's single lean
read (the schema's serializer, from the row's columns) after a tier run, an override set and removed, the
per-customer re-tier, the re-tier worker's micro-batch, a new version with other labels and grace, labels edited in
place, a grace changed in place, and an erasure; and the tier assignment statement, which writes lean_tail itself
(tier_assignment_lean_tail, the trigger's function) and so skips the trigger, writes the trigger's bytes."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.core.db import driver_connection
from app.customers import retier
from app.tiering.assignment import reads
from app.tiering.assignment.lean_json import customers_tiers_lean_json
from app.tiering.assignment.refresh import refresh_tiers
from tests.tiering.test_lean_json import _demo, _single_reads

# The stored text, and the text the trigger writes for the same row now (a no-op update, undone).
_STORED = "SELECT customer_id, policy_id, lean_tail, lean_override FROM tier_assignment ORDER BY 1, 2"


async def _same_as_single_reads(session, external_ids) -> bytes:
    connection = await driver_connection(session)
    documents = b""
    for language in ("en", "zh-CN"):
        asked = reads.TiersAsked(None, False, language, "en")
        built = await customers_tiers_lean_json(connection, external_ids, None, language, "en")
        expected = await _single_reads(connection, session, external_ids, asked)
        at = next((i for i, (a, b) in enumerate(zip(built, expected, strict=False)) if a != b), None)
        assert built == expected, (language, at and built[at - 300 : at + 80], at and expected[at - 300 : at + 80])
        documents += built
    stored = (await session.execute(text(_STORED))).all()
    savepoint = await session.begin_nested()
    await session.execute(text("UPDATE tier_assignment SET version_id = version_id"))
    assert (await session.execute(text(_STORED))).all() == stored  # nothing stale
    await savepoint.rollback()
    return documents


async def _trigger_calls(session) -> int:
    """How often this transaction entered the trigger function (needs track_functions = 'pl')."""
    return await session.scalar(
        text("SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'tier_assignment_lean'")
    )


async def test_the_assignment_statement_writes_the_text_itself(session):
    """The tier assignment statement fills lean_tail in the row it writes (migration a7c0ffee0036), inserts and
    updates alike, so the row trigger's WHEN keeps it out of PL/pgSQL; the text is the trigger's, byte for byte,
    for new rows, moved tiers, rows entering or in their grace, and rows under an override."""
    external_ids = await _demo(session)
    await session.execute(text("SET LOCAL track_functions = 'pl'"))
    assert await _trigger_calls(session) == 0
    ids = list(await session.scalars(text("SELECT id FROM customer WHERE erased_at IS NULL ORDER BY id")))
    # a third without any assignment (inserts), a fifth moved up or down (updates, downgrades into the grace)
    await session.execute(text("DELETE FROM tier_assignment WHERE customer_id % 3 = 0"))
    await session.execute(
        text(
            "UPDATE customer_aum_daily SET aum = CASE WHEN customer_id % 2 = 0 THEN aum * 40 ELSE aum / 40 END "
            "WHERE customer_id % 5 = 1"
        )
    )
    later = datetime.now(UTC) + timedelta(hours=5, microseconds=70)
    # the refreshed customers' only: the erased one (the last id) is not refreshed, and whether it holds an expiring
    # override depends on the ids the sequence gave (the tests run before this one)
    expiring = await session.scalar(
        text("SELECT count(*) FROM tier_assignment WHERE override_expires_at <= :later AND customer_id = ANY(:ids)"),
        {"later": later, "ids": ids},
    )
    counts = await refresh_tiers(session, ids, id_range=None, now=later)
    assert counts.initial and counts.upgrades and counts.evaluated > counts.initial
    # no row the statement wrote entered the trigger function; the overrides that expired were cleared by their
    # own update (app.tiering.assignment.overrides), through the trigger
    assert expiring and await _trigger_calls(session) == expiring
    written = (
        await session.execute(
            text(
                "SELECT count(*) FILTER (WHERE customer_id % 3 = 0), count(*) FILTER (WHERE customer_id % 3 <> 0), "
                "count(*) FILTER (WHERE lower_since IS NOT NULL), count(*) FILTER (WHERE override_code IS NOT NULL) "
                "FROM tier_assignment WHERE evaluated_at = :later"
            ),
            {"later": later},
        )
    ).one()
    assert all(written), written  # inserted, updated, in their grace, under an override
    await _same_as_single_reads(session, external_ids)  # the stored text is what the trigger writes anew
    assert await _trigger_calls(session) > 0  # which the no-op update there did, through the trigger
    # any other update of a row still goes through the trigger: an override set by hand
    await session.execute(
        text(
            "UPDATE tier_assignment SET override_code = 'gold', override_rank = 20, override_actor = 'rm-9' "
            "WHERE customer_id % 3 = 1 AND override_code IS NULL"
        )
    )
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment WHERE lean_override LIKE '%rm-9%'"))
    await _same_as_single_reads(session, external_ids)


async def _wealth_version(session) -> int:
    return await session.scalar(
        text(
            "SELECT v.version FROM tier_policy_version v JOIN tier_policy p ON p.id = v.policy_id "
            "WHERE p.key = 'wealth' AND v.status = 'active'"
        )
    )


async def test_the_stored_text_follows_every_writer(client, as_role, session, sessionmaker):
    external_ids = await _demo(session)
    await session.commit()
    admin = as_role("admin")
    documents = [await _same_as_single_reads(session, external_ids)]

    def changed(now: bytes) -> bool:
        documents.append(now)
        return documents[-1] != documents[-2]

    # a tier run after a fifth of the customers moved: upgrades, and downgrades into their grace
    await session.execute(
        text(
            "UPDATE customer_aum_daily SET aum = CASE WHEN customer_id % 2 = 0 THEN aum * 40 ELSE aum / 40 END "
            "WHERE customer_id % 5 = 1"
        )
    )
    await session.commit()
    run = await client.post("/v1/tier-runs", json={"policy_key": "wealth"}, headers=admin)
    assert run.status_code == 202, run.text
    assert changed(await _same_as_single_reads(session, external_ids))

    # overrides through the API: set (with an end, and a reason that needs escaping), removed
    expires = (datetime.now(UTC) + timedelta(days=9, microseconds=250)).isoformat()
    for external_id, body in (
        (external_ids[1], {"tier": "private", "reason": 'Family "office" \\ 家族办公室', "expires_at": expires}),
        (external_ids[2], {"tier": "mass", "reason": "Asked to be left alone"}),
    ):
        response = await client.put(f"/v1/customers/{external_id}/tiers/wealth/override", headers=admin, json=body)
        assert response.status_code == 200, response.text
    assert changed(await _same_as_single_reads(session, external_ids))
    removed = await client.delete(f"/v1/customers/{external_ids[2]}/tiers/wealth/override", headers=admin)
    assert removed.status_code == 200, removed.text
    assert changed(await _same_as_single_reads(session, external_ids))

    # the per-customer re-tier, and the re-tier worker's micro-batch, after the data moved back
    await session.execute(
        text(
            "UPDATE customer_aum_daily SET aum = CASE WHEN customer_id % 2 = 0 THEN aum / 40 ELSE aum * 40 END "
            "WHERE customer_id % 5 = 1"
        )
    )
    await session.commit()
    # one whose wealth fell into its grace in the run and now rose back (odd, id % 5 = 1): its re-tier ends the grace,
    # whichever ids the suite's earlier tests used up
    in_grace = set(
        await session.scalars(
            text(
                "SELECT c.external_id FROM customer c JOIN tier_assignment a ON a.customer_id = c.id "
                "JOIN tier_policy p ON p.id = a.policy_id AND p.key = 'wealth' "
                "WHERE c.id % 10 = 1 AND a.lower_since IS NOT NULL AND a.override_code IS NULL"
            )
        )
    )
    one = next(x for x in external_ids if x in in_grace and x not in external_ids[1:3])
    evaluated = await client.post(f"/v1/customers/{one}/tiers/evaluate", headers=as_role("integration"))
    assert evaluated.status_code == 200, evaluated.text
    assert changed(await _same_as_single_reads(session, external_ids))
    ids = list(await session.scalars(text("SELECT id FROM customer WHERE erased_at IS NULL ORDER BY id")))
    async with sessionmaker() as worker, worker.begin():
        await retier.mark(worker, ids, retier.ANY)
    async with sessionmaker() as worker, worker.begin():
        assert await retier.run_batch(worker, 1000) == len(ids)
    assert changed(await _same_as_single_reads(session, external_ids))

    # a new version with other labels and another grace, activated, and a run onto it
    number = await _wealth_version(session)
    tiers = (await client.get(f"/v1/tier-policies/wealth/versions/{number}", headers=admin)).json()["tiers"]
    for tier in tiers:
        tier["labels"] = {"en": f"{tier['code'].title()} class", "zh-CN": f"{tier['code']}等级"}
    created = await client.post(
        "/v1/tier-policies/wealth/versions", headers=admin, json={"tiers": tiers, "downgrade_grace_days": 45}
    )
    assert created.status_code == 201, created.text
    activated = await client.post(f"/v1/tier-policies/wealth/versions/{number + 1}/activate", headers=admin)
    assert activated.status_code == 200, activated.text
    assert (await client.post("/v1/tier-runs", json={"policy_key": "wealth"}, headers=admin)).status_code == 202
    now = await _same_as_single_reads(session, external_ids)
    assert changed(now) and "等级".encode() in now and b"Private class" in now

    # labels and grace edited in place (the service edits only drafts; the text must follow all the same; a new
    # updated_at, which the single read's cache of compiled versions is keyed by)
    await session.execute(
        text(
            "UPDATE tier_policy_version v SET tiers = (SELECT jsonb_agg(jsonb_set(e, '{labels}', "
            """jsonb_build_object('en', 'Renamed ' || (e->>'code')))) FROM jsonb_array_elements(v.tiers) e), """
            "downgrade_grace_days = 7, updated_at = clock_timestamp() "
            "FROM tier_policy p WHERE p.id = v.policy_id AND p.key = 'wealth' "
            "AND v.status = 'active'"
        )
    )
    await session.commit()
    now = await _same_as_single_reads(session, external_ids)
    assert changed(now) and b"Renamed private" in now and b"Private class" not in now
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment WHERE lower_since IS NOT NULL"))

    # an erasure
    erased = await client.delete(f"/v1/customers/{external_ids[4]}", headers=admin)
    assert erased.status_code == 204, erased.text
    assert changed(await _same_as_single_reads(session, external_ids))
