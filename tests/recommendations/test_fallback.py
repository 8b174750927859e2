"""The recommendations' fallback: when every product is filtered out and the fallback is on, the response carries
its service message (in the customer's language, marked `fallback`) instead of an empty list alone."""

from sqlalchemy import text

from tests.recommendations.test_recommendations import make_customer

ZH = "目前暂无适合您的新产品推荐，欢迎联系您的客户经理咨询。"


async def get_list(client, as_role, external_id, language=None):
    headers = {**as_role("app"), **({"Accept-Language": language} if language else {})}
    response = await client.get(
        f"/v1/customers/{external_id}/recommendations", params={"explore": "false", "limit": 10}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response


async def switch(client, as_role, enabled: bool, **headers):
    current = await client.get("/v1/recommendation-fallback", headers=as_role("admin"))
    body = {**current.json(), "enabled": enabled}
    return await client.put("/v1/recommendation-fallback", json=body, headers={**as_role("admin"), **headers})


async def test_an_empty_list_carries_the_fallback_only_when_it_is_on(client, routed, as_role, bank, session):
    # no marketing consent and R1 only: every product but the service one is filtered; holding that leaves none
    await make_customer(client, as_role, "F1", risk=None, consent=False, holdings=(("maturity_notice", "0.00"),))
    await make_customer(client, as_role, "F2")
    off = (await get_list(client, as_role, "F1")).json()
    assert off["items"] == [] and "fallback" not in off

    assert (await switch(client, as_role, True)).status_code == 200
    for http in (client, routed):  # the hot path and the router give the same document
        english = await get_list(http, as_role, "F1")
        assert english.json()["items"] == []
        assert english.json()["fallback"]["kind"] == "service_message"
        assert english.json()["fallback"]["code"] == "TALK_TO_ADVISER"
        assert "adviser" in english.json()["fallback"]["text"]
        chinese = await get_list(http, as_role, "F1", "zh-CN,zh;q=0.9")
        assert chinese.json()["fallback"]["text"] == ZH and chinese.headers["content-language"] == "zh-CN"
    # a list with items carries none, and nothing of the fallback is stored as a served item
    assert "fallback" not in (await get_list(client, as_role, "F2")).json()
    customer = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'F1'"))
    assert (
        await session.scalar(text("SELECT count(*) FROM recommendation_item WHERE customer_id = :c"), {"c": customer})
        == 0
    )

    assert (await switch(client, as_role, False)).status_code == 200
    assert "fallback" not in (await get_list(client, as_role, "F1")).json()


async def test_a_sold_out_catalog_gives_the_fallback(client, as_role, bank, session):
    await make_customer(client, as_role, "F3", risk=1, holdings=())
    await switch(client, as_role, True)
    listed = (await get_list(client, as_role, "F3")).json()
    for item in listed["items"]:  # sell out everything offered
        code = item["product"]["product_code"]
        put = await client.put(
            f"/v1/products/{code}/quota", json={"period": "month", "cap_count": 1}, headers=as_role("admin")
        )
        assert put.status_code == 200
        await session.execute(
            text("UPDATE product_quota SET sold_count = 1, sold_out_until = 'infinity' WHERE product_code = :p"),
            {"p": code},
        )
    after = (await get_list(client, as_role, "F3")).json()
    assert after["items"] == [] and after["fallback"]["code"] == "TALK_TO_ADVISER"


async def test_the_fallback_is_edited_with_etag_validation_and_audit(client, as_role, session):
    read = await client.get("/v1/recommendation-fallback", headers=as_role("app"))
    assert read.status_code == 200 and read.json()["enabled"] is False and read.json()["texts"]["zh-CN"] == ZH
    body = {"enabled": True, "code": "CALL_US", "texts": {"en": "Call us", "zh-CN": "请致电我们"}}
    stale = await client.put("/v1/recommendation-fallback", json=body, headers={**as_role("admin"), "If-Match": '"x"'})
    assert stale.status_code == 412
    saved = await client.put(
        "/v1/recommendation-fallback", json=body, headers={**as_role("admin"), "If-Match": read.headers["etag"]}
    )
    assert saved.status_code == 200 and saved.json() == body
    for bad, pointer in (  # noqa: B007 (the pointer names what each case breaks)
        ({**body, "texts": {}}, "/texts"),
        ({**body, "texts": {"english": "x"}}, "/texts/english"),
        ({**body, "code": "call us"}, "/code"),
    ):
        refused = await client.put("/v1/recommendation-fallback", json=bad, headers=as_role("admin"))
        assert refused.status_code == 422, refused.text
    assert (await client.put("/v1/recommendation-fallback", json=body, headers=as_role("app"))).status_code == 403
    audited = await session.scalar(
        text("SELECT count(*) FROM audit_event WHERE action = 'recommendation_fallback.update'")
    )
    assert audited == 1
