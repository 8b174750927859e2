"""Bulk intake of balances and holdings (POST /v1/holdings/import, `tierwise import-balances`): the same data gives
what per-customer PUT .../holdings gives; a stopped import resumes to the same end; rejections name line and field."""

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from app.customers import holdings_import
from tests.factories import customer_body

NDJSON = {"content-type": "application/x-ndjson"}
TODAY = date.today()
EARLIER = TODAY - timedelta(days=40)

# Two nights of balances for six customers: the second closes products, changes balances and moves tiers.
NIGHTS = [
    {
        1: [("current_account", "20000.00", EARLIER), ("balanced_fund", "90000000.00", EARLIER)],
        2: [("savings_account", "60000.00", EARLIER)],
        3: [("current_account", "100.00", EARLIER), ("mortgage", "250000.00", EARLIER)],
        4: [("equity_fund", "700000.00", EARLIER)],
        5: [("life_insurance", "5000.00", EARLIER)],
        6: [("term_deposit_12m", "800000.00", EARLIER), ("current_account", "10.00", EARLIER)],
    },
    {
        1: [("current_account", "25000.00", TODAY)],
        2: [("savings_account", "61000.00", TODAY), ("private_portfolio", "95000000.00", TODAY)],
        3: [("mortgage", "240000.00", TODAY)],
        4: [("equity_fund", "700000.00", TODAY), ("current_account", "5.00", TODAY)],
        5: [("life_insurance", "5000.00", EARLIER)],
        6: [("term_deposit_12m", "100.00", TODAY)],
    },
]


def ndjson(prefix: str, night: dict) -> str:
    return "".join(
        json.dumps({"customer_id": f"{prefix}{n}", "product_code": code, "balance": balance, "as_of": str(as_of)})
        + "\n"
        for n, holdings in night.items()
        for code, balance, as_of in holdings
    )


async def create_customers(client, as_role, prefix: str) -> None:
    for n in NIGHTS[0]:
        created = await client.put(f"/v1/customers/{prefix}{n}", json=customer_body(), headers=as_role("integration"))
        assert created.status_code == 201, created.text


async def state_of(session, prefix: str) -> dict:
    """Everything a holdings write leaves, by customer number (ids and times aside)."""
    queries = {
        "holdings": "SELECT h.product_code, h.opened_at, h.balance, h.as_of FROM holding h "
        "JOIN customer c ON c.id = h.customer_id WHERE c.external_id = :x ORDER BY 1",
        "history": "SELECT b.product_code, b.as_of, b.balance FROM holding_balance b "
        "JOIN customer c ON c.id = b.customer_id WHERE c.external_id = :x ORDER BY 1, 2",
        "aum": "SELECT d.day, d.aum FROM customer_aum_daily d JOIN customer c ON c.id = d.customer_id "
        "WHERE c.external_id = :x ORDER BY 1",
        "tiers": "SELECT a.policy_id, a.tier_code, a.qualified_code, a.lower_since IS NULL, a.facts::text "
        "FROM tier_assignment a JOIN customer c ON c.id = a.customer_id WHERE c.external_id = :x ORDER BY 1",
        "transitions": "SELECT t.policy_id, t.from_code, t.to_code, t.direction, t.reason FROM tier_transition t "
        "JOIN customer c ON c.id = t.customer_id WHERE c.external_id = :x ORDER BY t.id",
        "offer_state": "SELECT s.generation, s.valid_until = '-infinity' FROM customer_offer_state s "
        "JOIN customer c ON c.id = s.customer_id WHERE c.external_id = :x",
    }
    out = {}
    for n in NIGHTS[0]:
        out[n] = {
            name: [tuple(row) for row in (await session.execute(text(sql), {"x": f"{prefix}{n}"})).all()]
            for name, sql in queries.items()
        }
    return out


async def test_bulk_import_gives_what_per_customer_puts_give(client, as_role, wealth, session):
    await create_customers(client, as_role, "P")
    await create_customers(client, as_role, "B")
    for night in NIGHTS:
        for n, holdings in night.items():
            put = await client.put(
                f"/v1/customers/P{n}/holdings",
                headers=as_role("integration"),
                json={"holdings": [{"product_code": c, "balance": b, "as_of": str(d)} for c, b, d in holdings]},
            )
            assert put.status_code == 200, put.text
        imported = await client.post(
            "/v1/holdings/import", content=ndjson("B", night), headers={**NDJSON, **as_role("integration")}
        )
        assert imported.status_code == 201, imported.text
        body = imported.json()
        assert body["status"] == "succeeded" and body["rejected"] == 0 and body["customers_done"] == 6
        assert imported.headers["location"] == f"/v1/holdings/imports/{body['id']}"
    by_put, by_import = await state_of(session, "P"), await state_of(session, "B")
    assert by_import == by_put
    moves = {move for customer in by_put.values() for move in customer["transitions"]}
    assert {move[3] for move in moves} >= {"initial", "upgrade"}  # the data moved tiers, both ways alike
    assert [h[0] for h in by_put[2]["holdings"]] == ["private_portfolio", "savings_account"]
    assert len(by_put[1]["holdings"]) == 1 and len(by_put[1]["history"]) == 3  # one closed, its history kept


async def test_csv_gives_what_ndjson_gives(client, as_role, wealth, session):
    await create_customers(client, as_role, "N")
    await create_customers(client, as_role, "V")
    night = NIGHTS[0]
    rows = "".join(
        f"V{n},{code},,{balance},{as_of}\n" for n, holdings in night.items() for code, balance, as_of in holdings
    )
    csv_body = "customer_id,product_code,opened_at,balance,as_of\n" + rows
    as_csv = await client.post(
        "/v1/holdings/import", content=csv_body, headers={"content-type": "text/csv", **as_role("integration")}
    )
    as_json = await client.post(
        "/v1/holdings/import", content=ndjson("N", night), headers={**NDJSON, **as_role("integration")}
    )
    assert as_csv.status_code == 201 and as_json.status_code == 201, as_csv.text
    assert as_csv.json()["accepted"] == as_json.json()["accepted"] == 9
    assert await state_of(session, "V") == await state_of(session, "N")


async def test_rejections_name_line_and_field_and_hold_the_customer_back(client, as_role, wealth, session):
    await create_customers(client, as_role, "R")
    await client.put(
        "/v1/customers/R3/holdings",
        headers=as_role("integration"),
        json={"holdings": [{"product_code": "current_account", "balance": "5.00", "as_of": str(EARLIER)}]},
    )
    lines = [
        {"customer_id": "R1", "product_code": "current_account", "balance": "10.00", "as_of": str(TODAY)},  # 1 ok
        {"customer_id": "NOPE", "product_code": "current_account", "balance": "10.00", "as_of": str(TODAY)},  # 2
        {"customer_id": "R2", "product_code": "no_such_product", "balance": "1.00", "as_of": str(TODAY)},  # 3
        {"customer_id": "R3", "product_code": "savings_account", "balance": "ten", "as_of": str(TODAY)},  # 4
        {"customer_id": "R3", "product_code": "mortgage", "balance": "9.00", "as_of": str(TODAY)},  # 5 held back
        {"customer_id": "R4", "product_code": "current_account", "balance": "1.00", "as_of": str(TODAY)},  # 6 ok
        {"customer_id": "R4", "product_code": "current_account", "balance": "2.00", "as_of": str(TODAY)},  # 7 twice
    ]
    content = "\n".join(json.dumps(line) for line in lines) + '\n{"customer_id": \n'  # 8: not JSON
    response = await client.post("/v1/holdings/import", content=content, headers={**NDJSON, **as_role("integration")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["accepted"], body["rejected"], body["customers"]) == (1, 7, 1)
    by_line = {r["line"]: r for r in body["rejections"]}
    assert by_line[2]["pointer"] == "/customer_id" and by_line[2]["detail"] == "unknown customer"
    assert by_line[3]["pointer"] == "/product_code" and by_line[3]["detail"] == "unknown product"
    assert by_line[4]["pointer"] == "/balance"
    assert by_line[5]["pointer"] == "/customer_id" and "line 4" in by_line[5]["detail"]
    assert by_line[7]["pointer"] == "/product_code" and "line 6" in by_line[7]["detail"]
    assert by_line[6]["pointer"] == "/customer_id" and "line 7" in by_line[6]["detail"]
    assert 8 in by_line
    held = await client.get("/v1/customers/R3/holdings", headers=as_role("integration"))
    assert [h["product_code"] for h in held.json()["holdings"]] == ["current_account"]  # unchanged
    progress = await client.get(f"/v1/holdings/imports/{body['id']}", headers=as_role("integration"))
    assert progress.status_code == 200 and progress.json() == body


async def test_same_file_again_changes_nothing_and_keys_replay(client, as_role, wealth, session):
    await create_customers(client, as_role, "S")
    headers = {**NDJSON, **as_role("integration"), "Idempotency-Key": "night-1"}
    first = await client.post("/v1/holdings/import", content=ndjson("S", NIGHTS[0]), headers=headers)
    assert first.status_code == 201, first.text
    before = await state_of(session, "S")
    again = await client.post(
        "/v1/holdings/import", content=ndjson("S", NIGHTS[0]), headers={**NDJSON, **as_role("integration")}
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    replayed = await client.post("/v1/holdings/import", content=ndjson("S", NIGHTS[0]), headers=headers)
    assert replayed.status_code == 200 and replayed.headers["idempotent-replayed"] == "true"
    assert await state_of(session, "S") == before
    other = await client.post("/v1/holdings/import", content=ndjson("S", NIGHTS[1]), headers=headers)
    assert other.status_code == 422 and other.json()["errors"][0]["parameter"] == "Idempotency-Key"


async def test_an_import_stopped_between_chunks_resumes_to_the_same_end(client, as_role, wealth, session, sessionmaker):
    await create_customers(client, as_role, "K")
    await create_customers(client, as_role, "L")
    reference = await client.post(
        "/v1/holdings/import", content=ndjson("L", NIGHTS[0]), headers={**NDJSON, **as_role("integration")}
    )
    assert reference.status_code == 201
    ids = (await session.execute(text("SELECT id FROM customer WHERE external_id LIKE 'K%' ORDER BY id"))).scalars()
    ids = list(ids)

    async def chunks():
        yield ndjson("K", NIGHTS[0]).encode()

    staged = await holdings_import.stage(sessionmaker, chunks(), "ndjson", "test")
    merged = []

    async def stop_after_first(record) -> None:
        merged.append(record.customers_done)
        raise RuntimeError("killed between chunks")

    chunk_size = 2  # customers of ids 2k, 2k+1 per chunk: several chunks for six customers
    with pytest.raises(RuntimeError):
        await holdings_import.merge(sessionmaker, staged.import_id, chunk_size=chunk_size, on_chunk=stop_after_first)
    assert merged and 0 < merged[0] < len(ids)
    halfway = await client.get(f"/v1/holdings/imports/{staged.import_id}", headers=as_role("integration"))
    assert halfway.json()["status"] == "failed" and halfway.json()["customers_done"] == merged[0]
    resumed = await client.post(
        "/v1/holdings/import", content=ndjson("K", NIGHTS[0]), headers={**NDJSON, **as_role("integration")}
    )
    assert resumed.status_code == 200 and resumed.json()["id"] == staged.import_id
    assert resumed.json()["status"] == "succeeded" and resumed.json()["customers_done"] == len(ids)
    assert await state_of(session, "K") == await state_of(session, "L")


async def test_a_bad_csv_header_or_media_type_is_refused(client, as_role):
    bad = await client.post(
        "/v1/holdings/import",
        content="customer,product_code,balance,as_of\n",
        headers={"content-type": "text/csv", **as_role("integration")},
    )
    assert bad.status_code == 422 and "customer_id" in bad.json()["detail"]
    plain = await client.post(
        "/v1/holdings/import", content="x", headers={"content-type": "text/plain", **as_role("integration")}
    )
    assert plain.status_code == 422 and plain.json()["errors"][0]["parameter"] == "content-type"


async def test_erasure_removes_the_customers_staged_lines(client, as_role, wealth, session):
    await create_customers(client, as_role, "E")
    content = (
        '{"customer_id": "E1", "product_code": "current_account", "balance": "1.00", "as_of": "' + str(TODAY) + '"}\n'
        '{"customer_id": "E1", "product_code": "current_account", "balance": "2.00", "as_of": "' + str(TODAY) + '"}\n'
        '{"customer_id": "E2", "product_code": "current_account", "balance": "3.00", "as_of": "' + str(TODAY) + '"}\n'
    )
    imported = await client.post("/v1/holdings/import", content=content, headers={**NDJSON, **as_role("integration")})
    assert imported.json()["rejected"] == 2  # E1's lines stay staged, rejected, for the report
    staged = text("SELECT count(*) FROM holding_import_line l WHERE l.import_id = :i AND l.external_id = :x")
    assert await session.scalar(staged, {"i": imported.json()["id"], "x": "E1"}) == 2
    erased = await client.delete("/v1/customers/E1", headers=as_role("admin"))
    assert erased.status_code == 204, erased.text
    assert await session.scalar(staged, {"i": imported.json()["id"], "x": "E1"}) == 0
    left = await client.get(f"/v1/holdings/imports/{imported.json()['id']}", headers=as_role("integration"))
    assert left.json()["rejections"] == []


async def test_an_unknown_import_is_a_404(client, as_role):
    missing = await client.get("/v1/holdings/imports/999999", headers=as_role("integration"))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


async def test_holdings_move_the_customers_metrics_and_etag_not_their_profiles_updated_at(client, as_role, wealth):
    """updated_at is the profile's last change; a holdings write, per customer or by import, leaves it, while
    GET /v1/customers/{id} shows the new metrics under a new ETag (its representation changed)."""
    await create_customers(client, as_role, "U")
    headers = as_role("integration")
    before = {n: await client.get(f"/v1/customers/U{n}", headers=headers) for n in (1, 2)}
    put = await client.put(
        "/v1/customers/U1/holdings",
        headers=headers,
        json={"holdings": [{"product_code": "current_account", "balance": "20000.00", "as_of": str(TODAY)}]},
    )
    assert put.status_code == 200, put.text
    line = {"customer_id": "U2", "product_code": "current_account", "balance": "20000.00", "as_of": str(TODAY)}
    imported = await client.post("/v1/holdings/import", content=json.dumps(line) + "\n", headers={**NDJSON, **headers})
    assert imported.status_code == 201 and imported.json()["customers_done"] == 1, imported.text
    for n in (1, 2):
        after = await client.get(f"/v1/customers/U{n}", headers=headers)
        assert after.json()["updated_at"] == before[n].json()["updated_at"]
        deposits = (before[n].json()["metrics"]["deposit_balance"], after.json()["metrics"]["deposit_balance"])
        assert deposits[1] == "20000.00" != deposits[0]
        assert after.headers["etag"] != before[n].headers["etag"]
        same = {**headers, "If-None-Match": after.headers["etag"]}
        unchanged = await client.get(f"/v1/customers/U{n}", headers=same)
        assert unchanged.status_code == 304
    patched = await client.patch("/v1/customers/U1", json={"risk_level": 2}, headers=headers)
    assert patched.status_code == 200 and patched.json()["updated_at"] > before[1].json()["updated_at"]
