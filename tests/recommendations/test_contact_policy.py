"""The contact policy that ships (app/defaults/contact_policy.json, installed by `tierwise demo` and `serve --setup`)
suppresses what its rules say: a product shown three times in 30 days without engagement rests 14 days, a
dismissed product 60 days, a category with three dismissals in 90 days 90 days; engagement, other products and
service messages are untouched."""

import json
import uuid

import pytest
from sqlalchemy import text

from app.recommendations.contact import DEFAULT_CONTACT_POLICY, load_default_contact_policy
from tests.engagement.test_activities import activity_body
from tests.factories import serve_list
from tests.recommendations.conftest import CATALOG
from tests.recommendations.test_recommendations import make_customer, recommend


@pytest.fixture
async def shipped(session, bank):  # noqa: F811
    await load_default_contact_policy(session)
    await session.commit()


async def _shown(session, external_id: str, product_code: str, days_ago: float, *then: str) -> None:
    """The product shown to the customer `days_ago` days ago (an impression), and what the customer did then."""
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = :e"), {"e": external_id})
    [rid] = await serve_list(session, customer_id, [product_code], score="0", propensity="0")
    for offset, kind in enumerate(("impression", *then)):
        await session.execute(
            text(
                "INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, channel, "
                "strategy, "
                "kind, occurred_at) VALUES (:c, :e, :r, :p, 'mobile', 'personalised', :k, "
                "now() - make_interval(secs => :s))"
            ),
            {
                "c": customer_id,
                "e": str(uuid.uuid4()),
                "r": rid,
                "p": product_code,
                "k": kind,
                "s": days_ago * 86400 - offset,
            },
        )
    await session.commit()


async def _suppressed(client, as_role, external_id: str) -> dict[str, str]:
    """{product: the rule that suppresses it} for the customer now."""
    filtered = (await recommend(client, as_role, external_id, explain="true"))["filtered_out"]
    return {
        f["product_code"]: f["detail"].rsplit("rule ", 1)[1].rstrip(")")
        for f in filtered
        if f["filter"] == "contact_policy"
    }


async def test_the_shipped_policy_is_served_as_shipped(client, as_role, shipped):
    served = (await client.get("/v1/contact-policy", headers=as_role("app"))).json()["rules"]
    expected = json.loads(DEFAULT_CONTACT_POLICY.read_text())["rules"]
    assert [{k: rule[k] for k in expected[0]} for rule in served] == expected


async def test_three_ignored_impressions_in_30_days_rest_the_product_14_days(client, as_role, session, shipped):
    await make_customer(client, as_role, "IG1", risk=5)
    await _shown(session, "IG1", "bond_fund", 20)
    await _shown(session, "IG1", "bond_fund", 10)
    assert await _suppressed(client, as_role, "IG1") == {}  # two are not three
    for days_ago in (9, 8, 7):  # engaged with: not ignored
        await _shown(session, "IG1", "balanced_fund", days_ago, "click")
    await _shown(session, "IG1", "bond_fund", 5)
    assert await _suppressed(client, as_role, "IG1") == {"bond_fund": "ignored-three-times"}

    await make_customer(client, as_role, "IG2", risk=5)
    for days_ago in (20, 18, 16):  # three in 30 days, the last one more than 14 days ago: the rest is over
        await _shown(session, "IG2", "bond_fund", days_ago)
    assert await _suppressed(client, as_role, "IG2") == {}


@pytest.mark.parametrize(("days_ago", "suppressed"), [(1, True), (45, True), (59, True), (61, False)])
async def test_a_dismissed_product_rests_60_days(client, as_role, session, shipped, days_ago, suppressed):
    await make_customer(client, as_role, "DS1", risk=5)
    await _shown(session, "DS1", "equity_fund", days_ago, "dismiss")
    expected = {"equity_fund": "dismissed"} if suppressed else {}
    assert await _suppressed(client, as_role, "DS1") == expected


async def test_three_dismissals_in_a_category_in_90_days_rest_the_category(client, as_role, session, shipped):
    await make_customer(client, as_role, "CF1", risk=5)
    await _shown(session, "CF1", "bond_fund", 75, "dismiss")  # dismissals older than the product rule's 60 days
    await _shown(session, "CF1", "balanced_fund", 70, "dismiss")
    assert await _suppressed(client, as_role, "CF1") == {}
    await _shown(session, "CF1", "equity_fund", 65, "dismiss")
    assert await _suppressed(client, as_role, "CF1") == {
        code: "category-fatigue" for code in ("bond_fund", "balanced_fund", "equity_fund")
    }
    # another category, and a service message, are untouched
    offered = [item["product"]["product_code"] for item in (await recommend(client, as_role, "CF1"))["items"]]
    assert "savings_account" in offered or "term_deposit" in offered


async def _invited_to_a_programme(client, as_role, external_id: str, key: str, answer: str | None = "decline") -> None:
    """An activity `key` (everyone its audience), the customer invited to it on mobile and, with `answer`, answering
    it."""
    activity = activity_body(key=key, audience={"always": True}, benefit_codes=[])
    created = await client.post("/v1/activities", json=activity, headers=as_role("admin"))
    assert created.status_code == 201, created.text
    invited = await client.post(
        f"/v1/activities/{key}/invitations",
        json={"customer_ids": [external_id], "channel": "mobile"},
        headers=as_role("admin"),
    )
    assert invited.json()["invited"] == 1, invited.text
    if answer is not None:
        answered = await client.post(
            f"/v1/activities/{key}/participants/{external_id}/rsvp",
            json={"answer": answer, "channel": "mobile"},
            headers=as_role("app"),
        )
        assert answered.status_code == 200, answered.text


OFFERED_TO_RISK_5 = {code for code, _, _, _, eligibility, service in CATALOG if eligibility is None and not service}


async def test_three_declined_programme_invitations_fatigue_every_category_of_offers(client, as_role, shipped):
    """A declined invitation is a dismiss that offers no product: the shipped `category-fatigue` (three dismissals
    in 90 days, scope category) counts it in every category; the per-product rules do not."""
    await make_customer(client, as_role, "PI1", risk=5)
    await _invited_to_a_programme(client, as_role, "PI1", "salon_1")
    await _invited_to_a_programme(client, as_role, "PI1", "salon_2")
    assert await _suppressed(client, as_role, "PI1") == {}  # two are not three
    await _invited_to_a_programme(client, as_role, "PI1", "salon_3")
    # every product the customer was offered before (not held, eligible, suitable) now rests; the service message
    # does not
    assert await _suppressed(client, as_role, "PI1") == {
        code: "category-fatigue" for code in OFFERED_TO_RISK_5 - {"current_account"}
    }
    offered = [item["product"]["product_code"] for item in (await recommend(client, as_role, "PI1"))["items"]]
    assert offered == ["maturity_notice"]
    # accepting an invitation is engagement, not a contact outcome: another customer who accepted three is offered
    await make_customer(client, as_role, "PI2", risk=5)
    for n in (1, 2, 3):
        await _invited_to_a_programme(client, as_role, "PI2", f"evening_{n}", answer="accept")
    assert await _suppressed(client, as_role, "PI2") == {}


async def test_unanswered_invitations_count_for_no_one_product(client, as_role, session, shipped):
    """Three unanswered invitations are three ignored impressions of no product: the shipped `ignored-three-times`
    (scope product) does not fire; a category rule of ignored impressions counts them in every category."""
    await make_customer(client, as_role, "PI3", risk=5)
    for n in (1, 2, 3):
        await _invited_to_a_programme(client, as_role, "PI3", f"lecture_{n}", answer=None)
    assert await _suppressed(client, as_role, "PI3") == {}
    await session.execute(
        text(
            "INSERT INTO contact_rule (name, outcome, threshold, window_days, scope, channel, suppress_days) "
            "VALUES ('unanswered-mobile', 'ignored_impression', 3, 30, 'category', 'mobile', 7), "
            "('unanswered-email', 'ignored_impression', 1, 30, 'category', 'email', 7)"
        )
    )
    await session.commit()
    assert set((await _suppressed(client, as_role, "PI3")).values()) == {"unanswered-mobile"}


async def test_a_declined_manager_contact_counts_like_a_dismissal(client, as_role, shipped):
    """The managers' contact log: a contact the customer declined is a dismiss in every category (two declined
    invitations and one declined call make the three of `category-fatigue`); a contact that reached them is not."""
    await make_customer(client, as_role, "MC1", risk=5)
    await _invited_to_a_programme(client, as_role, "MC1", "salon_1")
    await _invited_to_a_programme(client, as_role, "MC1", "salon_2")
    for outcome in ("reached", "no_answer", "declined"):
        if outcome == "declined":
            assert await _suppressed(client, as_role, "MC1") == {}
        contact = await client.post(
            "/v1/customers/MC1/contacts",
            json={"kind": "call", "channel": "phone", "outcome": outcome},
            headers=as_role("admin"),
        )
        assert contact.status_code == 201, contact.text
    assert set((await _suppressed(client, as_role, "MC1")).values()) == {"category-fatigue"}
