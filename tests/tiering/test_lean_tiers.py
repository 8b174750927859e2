"""Tiers for the app, lean: GET .../tiers?policy_key=&explain=false, the bulk read of many customers' tiers, and
tier labels in the customer's language; the hot path answers each exactly as the routed path does."""

import pytest

from app.tiering.assignment.schemas import CustomerTiers, CustomerTiersBulk
from tests.tiering.test_assignment import make_customer

LOYALTY_TIERS = [
    {
        "code": "core",
        "label": "Core member",
        "labels": {"en": "Loyal core", "zh-CN": "忠实客户"},
        "rank": 20,
        "condition": {"attr": "aum_avg_3m", "op": "gte", "value": 50000},
    },
    {"code": "fan", "label": "Fan", "labels": {"zh": "粉丝"}, "rank": 10, "condition": {"always": True}},
]


@pytest.fixture
async def loyalty(client, as_role, wealth):
    """A second active policy, whose tiers have labels in English and Chinese."""
    admin = as_role("admin")
    created = await client.post(
        "/v1/tier-policies", headers=admin, json={"policy_key": "loyalty", "name": "Loyalty", "tiers": LOYALTY_TIERS}
    )
    assert created.status_code == 201, created.text
    assert created.json()["tiers"][0]["labels"] == {"en": "Loyal core", "zh-CN": "忠实客户"}
    assert (await client.post("/v1/tier-policies/loyalty/versions/1/activate", headers=admin)).status_code == 200


async def _both(client, routed, path: str, headers: dict, **kwargs):
    hot, plain = await client.get(path, headers=headers, **kwargs), await routed.get(path, headers=headers, **kwargs)
    assert hot.status_code == plain.status_code, (hot.text, plain.text)
    assert hot.json() == plain.json()
    assert hot.headers.get("content-language") == plain.headers.get("content-language")
    return hot


async def test_policy_key_and_explain_false_on_both_paths(client, routed, as_role, loyalty):
    await make_customer(client, as_role, "L1", "620000.00")
    app = as_role("app")
    full = (await _both(client, routed, "/v1/customers/L1/tiers", app)).json()
    assert [t["policy_key"] for t in full["tiers"]] == ["loyalty", "wealth"]
    assert all(t["explanation"] for t in full["tiers"])

    one = await _both(client, routed, "/v1/customers/L1/tiers?policy_key=wealth", app)
    assert one.json() == {"customer_id": "L1", "tiers": [full["tiers"][1]]}
    several = await _both(client, routed, "/v1/customers/L1/tiers?policy_key=wealth&policy_key=loyalty", app)
    assert several.json() == full
    unknown = await _both(client, routed, "/v1/customers/L1/tiers?policy_key=nosuch", app)
    assert unknown.json() == {"customer_id": "L1", "tiers": []}

    lean = await _both(client, routed, "/v1/customers/L1/tiers?explain=false", app)
    assert lean.json() == {"customer_id": "L1", "tiers": [{**t, "explanation": None} for t in full["tiers"]]}
    assert CustomerTiers.model_validate(lean.json()).model_dump(mode="json") == lean.json()
    assert len(lean.content) * 2 < len(one.content) + len(lean.content)  # the explanation was most of it
    lean_one = await _both(client, routed, "/v1/customers/L1/tiers?explain=false&policy_key=loyalty", app)
    assert lean_one.json()["tiers"] == [{**full["tiers"][0], "explanation": None}]

    # an unknown customer stays 404 whatever is asked
    assert (await _both(client, routed, "/v1/customers/NOBODY/tiers?policy_key=wealth", app)).status_code == 404


@pytest.mark.parametrize(
    "query, field",
    [("explain=yes", "explain"), ("explain=1", "explain"), ("policy_key=Bad%20Key", "policy_key")],
)
async def test_bad_query_values_are_the_same_422_on_both_paths(client, routed, as_role, wealth, query, field):
    await make_customer(client, as_role, "L2", "1000.00")
    response = await _both(client, routed, f"/v1/customers/L2/tiers?{query}", as_role("app"))
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    assert field in response.text


async def test_bulk_read_gives_each_customer_the_single_reads_tiers(client, routed, as_role, loyalty):
    for external_id, balance in (("B1", "620000.00"), ("B2", "1000.00"), ("B3", "60000.00")):
        await make_customer(client, as_role, external_id, balance)
    app = as_role("app")
    body = {"customer_ids": ["B3", "NOBODY", "B1", "B3", "B2"]}
    response = await client.post("/v1/customers/tiers:read", headers=app, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-language"] == "en"
    document = response.json()
    assert CustomerTiersBulk.model_validate(document).model_dump(mode="json") == document
    items = document["items"]
    assert [(i["customer_id"], i["found"]) for i in items] == [
        ("B3", True),
        ("NOBODY", False),
        ("B1", True),
        ("B2", True),
    ]
    assert items[1]["tiers"] == []
    for item in (items[0], items[2], items[3]):
        single = (await client.get(f"/v1/customers/{item['customer_id']}/tiers?explain=false", headers=app)).json()
        assert item["tiers"] == single["tiers"] and len(single["tiers"]) == 2
    # the same with explanations and a policy filter, on the routed app too
    body = {"customer_ids": ["B1", "B2"], "policy_key": ["wealth"], "explain": True}
    hot = await client.post("/v1/customers/tiers:read", headers=app, json=body)
    plain = await routed.post("/v1/customers/tiers:read", headers=app, json=body)
    assert hot.json() == plain.json()
    for item in hot.json()["items"]:
        single = await client.get(f"/v1/customers/{item['customer_id']}/tiers?policy_key=wealth", headers=app)
        assert item["tiers"] == single.json()["tiers"] and item["tiers"][0]["explanation"]


async def test_bulk_read_limits_and_bad_ids_are_422_naming_the_field(client, as_role, wealth):
    app = as_role("app")
    await make_customer(client, as_role, "B9", "1000.00")
    many = [f"C{i:05d}" for i in range(1000)]
    at_limit = await client.post("/v1/customers/tiers:read", headers=app, json={"customer_ids": many})
    assert at_limit.status_code == 200 and len(at_limit.json()["items"]) == 1000
    assert not any(item["found"] for item in at_limit.json()["items"])
    for body, pointer in (
        ({"customer_ids": [*many, "C99999"]}, "/customer_ids"),
        ({"customer_ids": []}, "/customer_ids"),
        ({"customer_ids": ["-bad-"]}, "/customer_ids/0"),
        ({"customer_ids": ["B9"], "explain": "false"}, "/explain"),
        ({"customer_ids": ["B9"], "policy": ["wealth"]}, "/policy"),
    ):
        response = await client.post("/v1/customers/tiers:read", headers=app, json=body)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert pointer in [error.get("pointer") for error in response.json()["errors"]], response.json()
    assert (await client.post("/v1/customers/tiers:read", json={"customer_ids": ["B9"]})).status_code == 401
    body = {"customer_ids": ["B9"]}
    denied = await client.post("/v1/customers/tiers:read", headers=as_role("integration"), json=body)
    assert denied.status_code == 403


@pytest.mark.parametrize(
    "accept, language, core, fan",
    [
        (None, "en", "Loyal core", "Fan"),  # the default language; `fan` has no English label: its `label`
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN", "忠实客户", "粉丝"),  # zh-CN, and zh-CN -> zh for `fan`
        ("zh", "zh-CN", "忠实客户", "粉丝"),
        ("fr-FR, en;q=0.5", "en", "Loyal core", "Fan"),
        ("en;q=0.2, zh-CN;q=0.9", "zh-CN", "忠实客户", "粉丝"),
        ("de", "en", "Loyal core", "Fan"),  # nothing supported asked: the default
    ],
)
async def test_tier_labels_in_the_customers_language_on_both_paths(
    client, routed, as_role, loyalty, accept, language, core, fan
):
    await make_customer(client, as_role, "LZ1", "60000.00")
    await make_customer(client, as_role, "LZ2", "10.00")
    headers = {**as_role("app"), **({"Accept-Language": accept} if accept else {})}
    labels = {}
    for external_id in ("LZ1", "LZ2"):
        response = await _both(client, routed, f"/v1/customers/{external_id}/tiers?policy_key=loyalty", headers)
        assert response.headers["content-language"] == language
        assert response.headers["vary"] == "Accept-Language"
        (tier,) = response.json()["tiers"]
        labels[tier["tier"]] = tier["label"]
    assert labels == {"core": core, "fan": fan}
    bulk = await client.post(
        "/v1/customers/tiers:read", headers=headers, json={"customer_ids": ["LZ1", "LZ2"], "policy_key": ["loyalty"]}
    )
    assert bulk.headers["content-language"] == language
    assert [item["tiers"][0]["label"] for item in bulk.json()["items"]] == [core, fan]
    # the wealth policy has no labels map: its `label` in every language
    wealth = (await client.get("/v1/customers/LZ1/tiers?policy_key=wealth", headers=headers)).json()
    assert wealth["tiers"][0]["label"] == "Gold"


async def test_default_language_is_configured(test_settings, sessionmaker, keys, loyalty, client, as_role):
    import httpx

    from app.main import create_app

    await make_customer(client, as_role, "LZ3", "60000.00")
    chinese = create_app(test_settings.model_copy(update={"default_language": "zh-CN"}), sessionmaker=sessionmaker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=chinese), base_url="http://t") as other:
        response = await other.get("/v1/customers/LZ3/tiers?policy_key=loyalty", headers=as_role("app"))
        assert response.headers["content-language"] == "zh-CN"
        assert response.json()["tiers"][0]["label"] == "忠实客户"
        english = await other.get(
            "/v1/customers/LZ3/tiers?policy_key=loyalty", headers={**as_role("app"), "Accept-Language": "en-GB"}
        )
        assert english.headers["content-language"] == "en" and english.json()["tiers"][0]["label"] == "Loyal core"


@pytest.mark.parametrize(
    "labels, pointer",
    [
        ({"english": "Core"}, "/tiers/0/labels/english/[key]"),  # the error machinery marks a bad key so
        ({"zh_CN": "忠实"}, "/tiers/0/labels/zh_CN/[key]"),
        ({"en": ""}, "/tiers/0/labels/en"),
        ({"en": "x" * 101}, "/tiers/0/labels/en"),
        (["en", "Core"], "/tiers/0/labels"),
    ],
)
async def test_label_maps_are_validated_naming_the_node(client, as_role, labels, pointer):
    tiers = [{**LOYALTY_TIERS[0], "labels": labels}, LOYALTY_TIERS[1]]
    response = await client.post(
        "/v1/tier-policies", headers=as_role("admin"), json={"policy_key": "loyalty", "name": "Loyalty", "tiers": tiers}
    )
    assert response.status_code == 422, response.text
    assert pointer in [error.get("pointer") for error in response.json()["errors"]], response.json()
