"""Tier overrides as edited documents (issue 17): GET .../{policy_key}/override with a strong ETag and 304, PUT and
DELETE with If-Match (412 problem+json when stale or when there is no override to match); and the answers of the
override and evaluate writes in the customer's language, as GET .../tiers is (issue 16)."""

import pytest
from sqlalchemy import text

from tests.tiering.test_assignment import make_customer

URL = "/v1/customers/OV1/tiers/loyalty/override"
LABELLED_TIERS = [
    {
        "code": "core",
        "label": "Core member",
        "labels": {"en": "Loyal core", "zh-CN": "忠实客户"},
        "rank": 20,
        "condition": {"attr": "aum_avg_3m", "op": "gte", "value": 50000},
    },
    {
        "code": "fan",
        "label": "Fan",
        "labels": {"en": "Fan", "zh-CN": "粉丝"},
        "rank": 10,
        "condition": {"always": True},
    },
]


@pytest.fixture
async def loyalty(client, as_role, wealth):
    """A second active policy whose tiers have English and Chinese labels, and customer OV1 in its `fan` tier."""
    admin = as_role("admin")
    created = await client.post(
        "/v1/tier-policies", headers=admin, json={"policy_key": "loyalty", "name": "Loyalty", "tiers": LABELLED_TIERS}
    )
    assert created.status_code == 201, created.text
    assert (await client.post("/v1/tier-policies/loyalty/versions/1/activate", headers=admin)).status_code == 200
    await make_customer(client, as_role, "OV1", "10.00")


def _loyalty(document: dict) -> dict:
    return next(t for t in document["tiers"] if t["policy_key"] == "loyalty")


async def test_an_override_has_a_strong_etag_304_while_unchanged_and_412_when_stale(client, as_role, loyalty, session):
    admin = as_role("admin")
    missing = await client.get(URL, headers=admin)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    blind = await client.put(URL, headers={**admin, "If-Match": '"anything"'}, json={"tier": "core", "reason": "VIP"})
    assert blind.status_code == 412 and blind.headers["content-type"] == "application/problem+json"
    assert _loyalty((await client.get("/v1/customers/OV1/tiers", headers=admin)).json())["override"] is None

    pinned = await client.put(URL, headers=admin, json={"tier": "core", "reason": "VIP"})
    assert pinned.status_code == 200, pinned.text
    read = await client.get(URL, headers=admin)
    tag = read.headers["ETag"]
    assert read.status_code == 200 and tag.startswith('"') and pinned.headers["ETag"] == tag
    assert read.json() == {"tier": "core", "reason": "VIP", "actor": read.json()["actor"], "expires_at": None}
    assert read.json() == _loyalty(pinned.json())["override"]
    unchanged = await client.get(URL, headers={**as_role("app"), "If-None-Match": tag})  # the app reads it too
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["ETag"] == tag

    stale = await client.put(URL, headers={**admin, "If-Match": '"stale"'}, json={"tier": "fan", "reason": "lower"})
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    assert stale.headers["ETag"] == tag and stale.json()["current_etag"] == tag
    assert (await client.get(URL, headers=admin)).json()["tier"] == "core"  # nothing changed

    changed = await client.put(URL, headers={**admin, "If-Match": tag}, json={"tier": "core", "reason": "VIP, kept"})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    new_tag = (await client.get(URL, headers=admin)).headers["ETag"]
    assert changed.headers["ETag"] == new_tag
    assert (await client.get(URL, headers={**admin, "If-None-Match": tag})).status_code == 200
    lower = {"tier": "fan", "reason": "lower"}
    assert (await client.put(URL, headers={**admin, "If-Match": tag}, json=lower)).status_code == 412

    assert (await client.delete(URL, headers={**admin, "If-Match": tag})).status_code == 412  # the old tag
    assert (await client.get(URL, headers=admin)).status_code == 200
    removed = await client.delete(URL, headers={**admin, "If-Match": new_tag})
    assert removed.status_code == 200 and "ETag" not in removed.headers
    assert _loyalty(removed.json())["override"] is None and _loyalty(removed.json())["tier"] == "fan"
    assert (await client.get(URL, headers=admin)).status_code == 404
    again = await client.delete(URL, headers={**admin, "If-Match": new_tag})
    assert again.status_code == 412  # nothing there to match
    assert (await client.delete(URL, headers=admin)).status_code == 200  # without If-Match: nothing to do
    actions = await session.scalars(
        text("SELECT action FROM audit_event WHERE entity_type = 'tier_override' ORDER BY id")
    )
    assert list(actions) == ["tier_override.set", "tier_override.set", "tier_override.remove"]


async def test_an_expired_override_is_not_in_force_and_cannot_be_matched(client, as_role, loyalty, session):
    admin = as_role("admin")
    pinned = await client.put(URL, headers=admin, json={"tier": "core", "reason": "VIP"})
    tag = pinned.headers["ETag"]
    await session.execute(text("UPDATE tier_assignment SET override_expires_at = now() - interval '1 day'"))
    await session.commit()
    assert (await client.get(URL, headers=admin)).status_code == 404
    assert (await client.delete(URL, headers={**admin, "If-Match": tag})).status_code == 412


@pytest.mark.parametrize(
    "accept, language, core, fan",
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN", "忠实客户", "粉丝"),
        ("en", "en", "Loyal core", "Fan"),
        (None, "en", "Loyal core", "Fan"),
    ],
)
async def test_override_and_evaluate_answers_are_in_the_customers_language(
    client, as_role, loyalty, accept, language, core, fan
):
    """As GET .../tiers: the labels in the language Accept-Language asks for, named by Content-Language, with Vary."""
    asked = {"Accept-Language": accept} if accept else {}
    admin, integration = {**as_role("admin"), **asked}, {**as_role("integration"), **asked}
    answers = {
        "put": await client.put(URL, headers=admin, json={"tier": "core", "reason": "VIP"}),
        "delete": await client.delete(URL, headers=admin),
        "evaluate": await client.post("/v1/customers/OV1/tiers/evaluate", headers=integration),
        "get": await client.get("/v1/customers/OV1/tiers", headers={**as_role("app"), **asked}),
    }
    expected = {"put": core, "delete": fan, "evaluate": fan, "get": fan}
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert answer.headers["Content-Language"] == language, name
        assert "Accept-Language" in answer.headers["Vary"], name
        assert _loyalty(answer.json())["label"] == expected[name], name
