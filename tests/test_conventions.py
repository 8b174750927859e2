"""One way everywhere (issue 17): every POST that creates honours Idempotency-Key (the first response replayed for
the same key and body, 422 for another body) and answers 201/202 with a Location that can be read; tier runs are
listed newest first."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.factories import WEALTH_TIERS, customer_body, day_in

AGO = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
SURVEY = {
    "event_id": "idem-s-1",
    "customer_id": "ID1",
    "kind": "nps",
    "score": 9,
    "channel": "mobile",
    "touchpoint": "app_rating_prompt",
    "occurred_at": AGO,
}
COMPLAINT = {"event_id": "idem-c-1", "customer_id": "ID1", "category": "fees", "channel": "phone", "description": "x"}
PRODUCT = {
    "product_code": "idem_fund",
    "name": "Idem fund",
    "category": "fund",
    "risk_level": 3,
    "channels": ["mobile"],
}

# (role, path, body, another body, success status, the table whose rows are counted)
CREATES = {
    "api key": ("admin", "/v1/api-keys", {"name": "idem", "role": "app"}, {"name": "idem", "role": "admin"}, 201,
                "api_key"),
    "tier policy": ("admin", "/v1/tier-policies", {"policy_key": "idem", "name": "Idem", "tiers": WEALTH_TIERS},
                    {"policy_key": "idem", "name": "Idem 2", "tiers": WEALTH_TIERS}, 201, "tier_policy"),
    "policy version": ("admin", "/v1/tier-policies/wealth/versions", {"copy_from": 1},
                       {"copy_from": 1, "description": "another"}, 201, "tier_policy_version"),
    "tier run": ("admin", "/v1/tier-runs", {"policy_key": "wealth"}, {"all": True}, 202, "tier_run"),
    "survey": ("app", "/v1/feedback/surveys", SURVEY, {**SURVEY, "score": 3}, 201, "survey_response"),
    "complaint": ("app", "/v1/feedback/complaints", COMPLAINT, {**COMPLAINT, "category": "service"}, 201,
                  "complaint"),
    "complaint transition": ("admin", "/v1/feedback/complaints/{complaint}/transitions", {"to_status": "in_progress"},
                             {"to_status": "resolved"}, 200, "complaint_transition"),
    "product": ("admin", "/v1/products", PRODUCT, {**PRODUCT, "name": "Other"}, 201, "product"),
}  # fmt: skip


@pytest.fixture
async def complaint(client, as_role, wealth) -> int:
    assert (await client.put("/v1/customers/ID1", headers=as_role("integration"), json=customer_body())).status_code
    opened = await client.post(
        "/v1/feedback/complaints", headers=as_role("app"), json={**COMPLAINT, "event_id": "idem-c-0"}
    )
    assert opened.status_code == 201, opened.text
    return opened.json()["id"]


@pytest.mark.parametrize("name", list(CREATES))
async def test_every_creating_post_replays_its_first_response_for_the_same_key(
    name, client, as_role, session, complaint
):
    role, path, body, other, expected, table = CREATES[name]
    path = path.format(complaint=complaint)
    headers = {**as_role(role), "Idempotency-Key": f"idem-{name.replace(' ', '-')}"}
    before = await session.scalar(text(f"SELECT count(*) FROM {table}"))
    first = await client.post(path, headers=headers, json=body)
    assert first.status_code == expected, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await client.post(path, headers=headers, json=body)
    assert again.status_code == expected and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == before + 1  # written once
    refused = await client.post(path, headers=headers, json=other)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["parameter"] == "Idempotency-Key"
    assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == before + 1
    if expected in (201, 202):
        location = first.headers["Location"]
        assert again.headers["Location"] == location
        read = await client.get(location, headers=as_role("admin"))
        assert read.status_code == 200, (location, read.text)
    else:
        assert "Location" not in first.headers


def test_every_creating_post_documents_the_key_and_a_location(app):
    spec = app.openapi()
    documented = {}
    for path, operations in spec["paths"].items():
        post = operations.get("post")
        if post and any(p["name"] == "Idempotency-Key" for p in post.get("parameters", [])):
            documented[path] = post
    for _, path, *_rest in CREATES.values():
        path = path.replace("{complaint}", "{complaint_id}").replace("/wealth/", "/{policy_key}/")
        assert path in documented, path
        created = {s: r for s, r in documented[path]["responses"].items() if s in ("201", "202")}
        assert all("Location" in r["headers"] for r in created.values()), path


async def test_tier_runs_are_listed_newest_first_page_by_page(client, as_role, wealth):
    admin = as_role("admin")
    started = []
    for _ in range(3):
        run = await client.post("/v1/tier-runs", headers=admin, json={"policy_key": "wealth"})
        assert run.status_code == 202, run.text
        assert run.headers["Location"] == f"/v1/tier-runs/{run.json()['id']}"
        started.append(run.json()["id"])
    first = (await client.get("/v1/tier-runs", headers=admin, params={"limit": 2})).json()
    assert [r["id"] for r in first["items"]] == started[::-1][:2]
    assert first["items"][0]["policy_key"] == "wealth" and first["next_cursor"]
    rest = (await client.get("/v1/tier-runs", headers=admin, params={"cursor": first["next_cursor"]})).json()
    assert rest["items"][0]["id"] == started[0] and rest["next_cursor"] is None  # then the activation's run
    failed = (await client.get("/v1/tier-runs", headers=admin, params={"status": "failed"})).json()
    assert failed == {"items": [], "next_cursor": None}
    bad = await client.get("/v1/tier-runs", headers=admin, params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "cursor"


def test_every_list_is_a_page_with_cursor_and_limit(app):
    """One pagination style: every GET that returns a list returns `items` and `next_cursor` and takes `cursor`
    and `limit` (documents holding a list, such as a customer's tiers or holdings, are not lists)."""
    spec = app.openapi()
    schemas = spec["components"]["schemas"]
    lists = []
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        if not get or not path.startswith("/v1"):
            continue
        schema = get["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema.get("type") != "array", f"{path} returns a bare array"
        properties = schemas[schema["$ref"].split("/")[-1]].get("properties", {}) if "$ref" in schema else {}
        if "next_cursor" in properties or set(properties) == {"items"}:
            lists.append(path)
            assert "items" in properties and "next_cursor" in properties, path
            assert {"cursor", "limit"} <= {p["name"] for p in get.get("parameters", []) if p["in"] == "query"}, path
    for path in ("/v1/api-keys", "/v1/attributes", "/v1/attributes/custom", "/v1/care-calendar", "/v1/tier-runs",
                 "/v1/tier-policies", "/v1/tier-policies/{policy_key}/changes", "/v1/webhooks/event-types",
                 "/v1/tier-transitions", "/v1/customers/{customer_id}/tiers/history"):  # fmt: skip
        assert path in lists, path


async def walk(client, headers, path, params=None) -> list[dict]:
    """Every item of a list, fetched one per page."""
    items, cursor = [], None
    for _ in range(200):
        paging = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = await client.get(path, headers=headers, params={**(params or {}), **paging})
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 1
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the walk does not end")


async def test_the_former_bare_lists_walk_page_by_page_to_the_whole_list(client, as_role, session, wealth):
    admin = as_role("admin")
    await client.put("/v1/attributes/custom/b_flag", headers=admin, json={"type": "boolean"})
    await client.put("/v1/attributes/custom/a_count", headers=admin, json={"type": "integer"})
    second = {"policy_key": "second", "name": "S", "tiers": WEALTH_TIERS}
    await client.post("/v1/tier-policies", headers=admin, json=second)
    for path, key, expected in (
        ("/v1/attributes/custom", "name", ["a_count", "b_flag"]),
        ("/v1/tier-policies", "policy_key", ["wealth", "second"]),
        ("/v1/tier-policies/wealth/changes", "action", ["create", "activate"]),
    ):
        assert [item[key] for item in await walk(client, admin, path)] == expected, path
    everything = (await client.get("/v1/attributes", headers=admin, params={"limit": 500})).json()
    assert everything["next_cursor"] is None and [a["name"] for a in everything["items"]][-2:] == ["a_count", "b_flag"]
    assert await walk(client, admin, "/v1/attributes") == everything["items"]
    keys = await walk(client, admin, "/v1/api-keys")
    assert [k["name"] for k in keys] == ["test-app", "test-integration", "test-admin"][: len(keys)] and len(keys) >= 3
    types = await walk(client, admin, "/v1/webhooks/event-types")
    assert len({t["name"] for t in types}) == len(types) and "tier.upgraded" in {t["name"] for t in types}


async def test_the_care_calendar_pages_in_date_order(client, as_role, wealth):
    soon = day_in(2)
    for n in range(3):  # each customer: a birthday and an anniversary on the same day
        body = customer_body(
            birth_date=soon.replace(year=1980 + n).isoformat(),
            onboarded_at=datetime.combine(soon.replace(year=2010 + n), datetime.min.time(), UTC).isoformat(),
        )
        assert (await client.put(f"/v1/customers/CAL{n}", headers=as_role("integration"), json=body)).status_code
    tier = (await client.get("/v1/customers/CAL0/tiers", headers=as_role("app"))).json()["tiers"][0]["tier"]
    params = {"policy_key": "wealth", "tier": tier, "days": 7}
    whole = (await client.get("/v1/care-calendar", headers=as_role("admin"), params=params)).json()
    assert len(whole["items"]) == 6 and whole["next_cursor"] is None
    assert await walk(client, as_role("admin"), "/v1/care-calendar", params) == whole["items"]


async def test_transition_feed_items_carry_a_stable_id(client, as_role, wealth, session):
    body = customer_body()
    assert (await client.put("/v1/customers/TR1", headers=as_role("integration"), json=body)).status_code == 201
    holdings = {"holdings": [{"product_code": "savings_account", "balance": "60000.00", "as_of": "2026-01-01"}]}
    await client.put("/v1/customers/TR1/holdings", headers=as_role("integration"), json=holdings)
    history = (await client.get("/v1/customers/TR1/tiers/history", headers=as_role("admin"))).json()["items"]
    ids = [t["id"] for t in history]
    assert ids and ids == sorted(set(ids))
    stored = await session.scalars(text("SELECT id FROM tier_transition ORDER BY id"))
    assert set(ids) <= set(stored)
    feed = (await client.get("/v1/tier-transitions", headers=as_role("admin"))).json()
    assert {t["id"] for t in feed["items"]} >= set(ids)
    again = await client.get("/v1/tier-transitions", headers=as_role("admin"), params={"cursor": feed["next_cursor"]})
    assert again.status_code == 200 and again.json()["items"] == []


CONTACT_RULES = {
    "rules": [
        {
            "name": "ignored",
            "outcome": "ignored_impression",
            "threshold": 3,
            "window_days": 7,
            "scope": "product",
            "channel": None,
            "suppress_days": 14,
        }
    ]
}


@pytest.mark.parametrize("document", ["customer", "product", "contact policy"])
async def test_edited_documents_have_strong_etags_304_when_unchanged_and_412_when_stale(
    document, client, as_role, wealth
):
    admin = as_role("admin")
    if document == "customer":
        created = await client.put("/v1/customers/ET1", headers=as_role("integration"), json=customer_body())
        assert created.status_code == 201 and created.headers["Location"] == "/v1/customers/ET1"
        url = "/v1/customers/ET1"
        edits = [("patch", {"marketing_consent": False}), ("put", customer_body(display_name="Other Person"))]
    elif document == "product":
        url = "/v1/products/equity_fund"
        edits = [("patch", {"lever": "1.5"}), ("delete", None)]
    else:
        url = "/v1/contact-policy"
        edits = [("put", CONTACT_RULES), ("put", {"rules": []})]
    for method, body in edits:
        read = await client.get(url, headers=admin)
        tag = read.headers["ETag"]
        assert read.status_code == 200 and tag.startswith('"')
        unchanged = await client.get(url, headers={**admin, "If-None-Match": tag})
        assert unchanged.status_code == 304 and unchanged.headers["ETag"] == tag and unchanged.content == b""
        kwargs = {"json": body} if body is not None else {}
        stale = await client.request(method, url, headers={**admin, "If-Match": '"stale"'}, **kwargs)
        assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
        assert stale.headers["ETag"] == tag and (await client.get(url, headers=admin)).headers["ETag"] == tag
        written = await client.request(method, url, headers={**admin, "If-Match": tag}, **kwargs)
        assert written.status_code == 200, written.text
        assert written.headers["ETag"] != tag
        assert (await client.get(url, headers=admin)).headers["ETag"] == written.headers["ETag"]
        changed = await client.get(url, headers={**admin, "If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["ETag"] == written.headers["ETag"]
        again = await client.request(method, url, headers={**admin, "If-Match": tag}, **kwargs)  # the old tag
        assert again.status_code == 412


async def test_if_match_on_a_customer_that_does_not_exist_is_a_412(client, as_role):
    put = await client.put(
        "/v1/customers/NOPE1", headers={**as_role("integration"), "If-Match": "*"}, json=customer_body()
    )
    assert put.status_code == 412
    assert (await client.get("/v1/customers/NOPE1", headers=as_role("integration"))).status_code == 404


async def test_a_policy_version_is_304_while_unchanged(client, as_role, wealth):
    admin = as_role("admin")
    read = await client.get("/v1/tier-policies/wealth/versions/1", headers=admin)
    tag = read.headers["ETag"]
    assert tag.startswith('"')
    unchanged = await client.get("/v1/tier-policies/wealth/versions/1", headers={**admin, "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.headers["ETag"] == tag


def test_every_429_documents_the_ratelimit_headers_beside_retry_after(app):
    spec = app.openapi()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "429" in operation["responses"]:
                headers = operation["responses"]["429"]["headers"]
                assert {"Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(headers), (
                    method,
                    path,
                )


async def test_large_answers_are_gzipped_and_small_documents_and_hot_reads_are_not(client, as_role, wealth):
    gzip = {**as_role("admin"), "Accept-Encoding": "gzip"}
    large = await client.get("/v1/attributes", headers=gzip, params={"limit": 500})
    assert large.status_code == 200 and large.headers["Vary"] == "Accept-Encoding"
    assert large.headers["Content-Encoding"] == "gzip" and int(large.headers["Content-Length"]) < len(large.content)
    assert large.json()["items"]  # httpx decoded it
    plain = await client.get(
        "/v1/attributes", headers={**as_role("admin"), "Accept-Encoding": "identity"}, params={"limit": 500}
    )
    assert "Content-Encoding" not in plain.headers and plain.json() == large.json()
    small = await client.get("/v1/products/equity_fund", headers=gzip)
    assert small.status_code == 200 and "Content-Encoding" not in small.headers
    await client.put("/v1/customers/GZ1", headers=as_role("integration"), json=customer_body())
    hot = await client.get("/v1/customers/GZ1/tiers", headers={**as_role("app"), "Accept-Encoding": "gzip"})
    assert hot.status_code == 200 and "Content-Encoding" not in hot.headers


async def test_a_custom_attribute_has_an_etag_304_when_unchanged_and_412_when_stale(client, as_role):
    admin, url = as_role("admin"), "/v1/attributes/custom/branch_visits"
    assert (await client.get(url, headers=admin)).status_code == 404
    blind = await client.put(url, headers={**admin, "If-Match": "*"}, json={"type": "integer"})
    assert blind.status_code == 412  # nothing there to match yet
    declared = await client.put(url, headers=admin, json={"type": "integer"})
    tag = declared.headers["ETag"]
    assert declared.status_code == 200 and (await client.get(url, headers=admin)).headers["ETag"] == tag
    assert (await client.get(url, headers={**admin, "If-None-Match": tag})).status_code == 304
    stale = await client.put(url, headers={**admin, "If-Match": '"stale"'}, json={"type": "integer", "unit": "n"})
    assert stale.status_code == 412 and stale.headers["ETag"] == tag
    described = await client.put(url, headers={**admin, "If-Match": tag}, json={"type": "integer", "unit": "n"})
    assert described.status_code == 200 and described.headers["ETag"] != tag and described.json()["unit"] == "n"
    assert (await client.get(url, headers={**admin, "If-None-Match": tag})).status_code == 200


async def test_a_retried_import_with_its_key_answers_the_first_counts(client, as_role, session):
    line = '{"customer_id": "IDEM-IMP", "segment": "retail", "onboarded_at": "2020-01-15T00:00:00Z"}\n'
    headers = {**as_role("integration"), "content-type": "application/x-ndjson", "Idempotency-Key": "import-1"}
    first = await client.post("/v1/customers/import", headers=headers, content=line)
    assert first.status_code == 200 and first.json()["created"] == 1, first.text
    again = await client.post("/v1/customers/import", headers=headers, content=line)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    other = await client.post("/v1/customers/import", headers=headers, content=line.replace("retail", "private"))
    assert other.status_code == 422 and other.json()["errors"][0]["parameter"] == "Idempotency-Key"
    unkeyed = {k: v for k, v in headers.items() if k != "Idempotency-Key"}
    assert (await client.post("/v1/customers/import", headers=unkeyed, content=line)).json()["updated"] == 1
    segment = await session.scalar(text("SELECT segment FROM customer WHERE external_id = 'IDEM-IMP'"))
    assert segment == "retail"


def _large_contact_policy(suppress_days: int) -> dict:
    rule = CONTACT_RULES["rules"][0]
    return {
        "rules": [
            {**rule, "name": f"rule-{n:02d}-" + "x" * 80, "suppress_days": suppress_days} for n in range(40)
        ]  # about 11 KB: gzipped for a client that accepts it
    }


async def test_a_gzipped_answer_has_its_own_strong_etag_and_either_form_works_in_conditions(client, as_role):
    """RFC 9110: a strong validator differs per content coding. The gzipped contact policy's tag is the identity
    tag with "-gzip" inside the quotes; If-None-Match gives 304 for either, If-Match writes with either, and a
    stale one in either form is a 412."""
    admin = as_role("admin")
    gzip, identity = {**admin, "Accept-Encoding": "gzip"}, {**admin, "Accept-Encoding": "identity"}
    assert (await client.put("/v1/contact-policy", headers=admin, json=_large_contact_policy(14))).status_code == 200
    plain = await client.get("/v1/contact-policy", headers=identity)
    zipped = await client.get("/v1/contact-policy", headers=gzip)
    assert "Content-Encoding" not in plain.headers and zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.json() == plain.json()
    tag, gzip_tag = plain.headers["ETag"], zipped.headers["ETag"]
    assert tag.startswith('"') and gzip_tag == tag[:-1] + '-gzip"' and gzip_tag != tag
    # 304 for either form; the 304 names the representation the client holds
    for held, headers in ((gzip_tag, gzip), (tag, gzip), (gzip_tag, identity), (f"W/{gzip_tag}", gzip)):
        unchanged = await client.get("/v1/contact-policy", headers={**headers, "If-None-Match": held})
        assert unchanged.status_code == 304 and unchanged.content == b"", held
        assert unchanged.headers["ETag"] == (gzip_tag if "gzip" in held else tag)
    # a client that read the gzipped copy writes with its tag
    written = await client.put(
        "/v1/contact-policy", headers={**gzip, "If-Match": gzip_tag}, json=_large_contact_policy(30)
    )
    assert written.status_code == 200, written.text
    new_gzip_tag = written.headers["ETag"]
    assert written.headers["Content-Encoding"] == "gzip" and new_gzip_tag.endswith('-gzip"')
    assert new_gzip_tag != gzip_tag
    # the old tag, in either form, is stale now; a weak tag never satisfies If-Match
    for stale in (gzip_tag, tag, f"W/{new_gzip_tag}"):
        refused = await client.put(
            "/v1/contact-policy", headers={**admin, "If-Match": stale}, json=_large_contact_policy(60)
        )
        assert refused.status_code == 412 and refused.headers["content-type"] == "application/problem+json", stale
    current = (await client.get("/v1/contact-policy", headers=identity)).headers["ETag"]
    assert new_gzip_tag == current[:-1] + '-gzip"'
    changed = await client.get("/v1/contact-policy", headers={**gzip, "If-None-Match": gzip_tag})
    assert changed.status_code == 200 and changed.headers["ETag"] == new_gzip_tag
    back = await client.put("/v1/contact-policy", headers={**admin, "If-Match": current}, json=CONTACT_RULES)
    assert back.status_code == 200 and "Content-Encoding" not in back.headers  # small: identity, its own tag
    assert back.headers["ETag"] == (await client.get("/v1/contact-policy", headers=gzip)).headers["ETag"]
