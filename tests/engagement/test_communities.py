"""Communities through HTTP: the audience (the one compiler, tiers of a policy), consent and the contact policy
decide who is invited; members join, are active and leave, each move kept with time and channel; capacity holds;
metrics compare members with non-members of the same tiers; events reach the outbox; erasure removes it all."""

from sqlalchemy import text

from tests.engagement.helpers import ago, birth_for, default_policies, make_customer, open_community


async def _invite(client, as_role, key, *customers, channel="mobile"):
    response = await client.post(
        f"/v1/communities/{key}/invitations",
        json={"customer_ids": list(customers), "channel": channel},
        headers=as_role("admin"),
    )
    assert response.status_code == 200, response.text
    return {r["customer_id"]: r for r in response.json()["results"]}


async def _move(client, as_role, key, customer, to, channel="mobile", **extra):
    return await client.post(
        f"/v1/communities/{key}/members/{customer}/transitions",
        json={"to_state": to, "channel": channel, **extra},
        headers=as_role("app"),
    )


async def test_invitations_go_only_to_admitted_consenting_unsuppressed_customers(client, as_role, session):
    await default_policies(session)
    await make_customer(client, as_role, "Y1", birth_date=birth_for(30))
    await make_customer(client, as_role, "OLD", birth_date=birth_for(60))
    await make_customer(client, as_role, "NOC", birth_date=birth_for(28), marketing_consent=False)
    await make_customer(client, as_role, "DEC", birth_date=birth_for(25))
    await open_community(client, as_role, audience_policy_key="loyalty", audience_tiers=["casual", "core"])

    first = await _invite(client, as_role, "young-families", "Y1", "OLD", "NOC", "DEC", "NOBODY")
    assert {k: v["outcome"] for k, v in first.items()} == {
        "Y1": "invited",
        "OLD": "not_in_audience",
        "NOC": "no_marketing_consent",
        "DEC": "invited",
        "NOBODY": "unknown_customer",
    }
    assert (await _move(client, as_role, "young-families", "DEC", "declined")).status_code == 200
    # Again: Y1 is already invited; DEC declined, and the shipped contact policy's `dismissed` rule (one dismiss in
    # 60 days suppresses the same target for 60 days) holds the invitation back.
    again = await _invite(client, as_role, "young-families", "Y1", "DEC")
    assert again["Y1"]["outcome"] == "already_invited"
    assert again["DEC"] == {"customer_id": "DEC", "outcome": "contact_policy", "contact_rule": "dismissed"}

    # A tier outside the audience's tiers: the audience admits no iron fans here.
    narrowed = await client.patch(
        "/v1/communities/young-families",
        json={"audience": {"always": True}, "audience_policy_key": "loyalty", "audience_tiers": ["iron_fan"]},
        headers=as_role("admin"),
    )
    assert narrowed.status_code == 200, narrowed.text
    assert (await _invite(client, as_role, "young-families", "OLD"))["OLD"]["outcome"] == "not_in_audience"


async def test_an_audience_the_compiler_refuses_points_at_the_bad_node(client, as_role, session):
    body = {
        "key": "bad",
        "name": "Bad",
        "owner_team": "t",
        "audience": {"all": [{"attr": "age", "op": "lt", "value": "young"}]},
    }
    response = await client.post("/v1/communities", json=body, headers=as_role("admin"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"].startswith("/audience/all/0")
    unknown = await client.post(
        "/v1/communities",
        json={**body, "audience": {"always": True}, "audience_policy_key": "nope", "audience_tiers": ["x"]},
        headers=as_role("admin"),
    )
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["pointer"] == "/audience_policy_key"


async def test_membership_lifecycle_capacity_activity_and_metrics(client, as_role, session):
    await default_policies(session)
    for name in ("M1", "M2", "M3", "N1", "N2"):
        await make_customer(client, as_role, name, birth_date=birth_for(30))
    await open_community(client, as_role, capacity=2, audience_policy_key="loyalty", audience_tiers=["casual"])
    invited = await _invite(client, as_role, "young-families", "M1", "M2", "M3")
    assert all(r["outcome"] == "invited" for r in invited.values())

    assert (await _move(client, as_role, "young-families", "M1", "joined", at=ago(days=10))).status_code == 200
    assert (await _move(client, as_role, "young-families", "M2", "joined", at=ago(days=9))).status_code == 200
    full = await _move(client, as_role, "young-families", "M3", "joined")
    assert full.status_code == 409, full.text  # capacity 2
    assert (await _move(client, as_role, "young-families", "M3", "left")).status_code == 409  # invited cannot leave

    events = {
        "events": [
            {"event_id": "p1", "customer_id": "M1", "kind": "post", "occurred_at": ago(days=2)},
            {"event_id": "p2", "customer_id": "M1", "kind": "reply", "occurred_at": ago(days=1)},
            {"event_id": "p3", "customer_id": "M3", "kind": "share", "occurred_at": ago(days=1)},  # not a member
            {"event_id": "p4", "customer_id": "M2", "kind": "post", "occurred_at": ago(days=20)},  # before joining
        ]
    }
    recorded = await client.post("/v1/communities/young-families/activity-events", json=events, headers=as_role("app"))
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["accepted"] == 2 and [r["index"] for r in recorded.json()["rejections"]] == [2, 3]
    retried = await client.post("/v1/communities/young-families/activity-events", json=events, headers=as_role("app"))
    assert retried.json()["accepted"] == 0 and retried.json()["duplicates"] == 2
    # events are kept once per customer: another member's event under the same id is that member's own
    other = {"events": [{"event_id": "p1", "customer_id": "M2", "kind": "share", "occurred_at": ago(days=1)}]}
    shared = await client.post("/v1/communities/young-families/activity-events", json=other, headers=as_role("app"))
    assert (shared.json()["accepted"], shared.json()["duplicates"]) == (1, 0)

    # M2 leaves: a place frees and M3 can join.
    assert (await _move(client, as_role, "young-families", "M2", "left", channel="web")).status_code == 200
    assert (await _move(client, as_role, "young-families", "M3", "joined")).status_code == 200
    history = (await client.get("/v1/communities/young-families/members/M2", headers=as_role("admin"))).json()
    assert [(m["from_state"], m["to_state"], m["channel"]) for m in history["history"]] == [
        (None, "invited", "mobile"),
        ("invited", "joined", "mobile"),
        ("joined", "left", "web"),
    ]

    # NPS, then CSAT (sums of integers come back as numeric)
    answers = [("nps", "M1", 10, 2), ("nps", "M3", 9, 2), ("nps", "N1", 3, 2), ("nps", "N2", 8, 2)]
    answers += [("csat", "M1", 5, 1), ("csat", "M1", 4, 1), ("csat", "N1", 2, 1)]
    for kind, customer, score, hours in answers:
        survey = {
            "event_id": f"{kind}-{customer}-{score}",
            "customer_id": customer,
            "kind": kind,
            "score": score,
            "channel": "mobile",
            "touchpoint": "app",
            "occurred_at": ago(hours=hours),
        }
        assert (await client.post("/v1/feedback/surveys", json=survey, headers=as_role("app"))).status_code == 201

    response = await client.get("/v1/communities/young-families/metrics", headers=as_role("admin"))
    assert response.status_code == 200, response.text
    m = response.json()
    assert (m["members"], m["joins"], m["leaves"], m["active_members_30d"]) == (2, 3, 1, 1)
    assert m["stickiness"] == 0.5
    assert m["members_satisfaction"]["nps"] == 100.0 and m["members_satisfaction"]["customers"] == 2
    # non-members of the members' tier (casual): N1 (detractor), N2 (passive) and M2, who left (no answer)
    assert m["non_members_satisfaction"]["customers"] == 3
    assert m["non_members_satisfaction"]["nps"] == -50.0
    assert (m["members_satisfaction"]["csat_responses"], m["members_satisfaction"]["csat_avg"]) == (2, 4.5)
    assert (m["non_members_satisfaction"]["csat_responses"], m["non_members_satisfaction"]["csat_avg"]) == (1, 2.0)

    member_list = await client.get("/v1/communities/young-families/members?state=joined", headers=as_role("admin"))
    assert [i["customer_id"] for i in member_list.json()["items"]] == ["M1", "M3"]

    removed = await client.delete("/v1/communities/young-families/members/M3", headers=as_role("admin"))
    assert removed.status_code == 200 and removed.json()["state"] == "removed"
    audit = await session.scalar(text("SELECT count(*) FROM audit_event WHERE entity_type = 'community'"))
    assert audit == 3  # create, invite, remove
    outbox = (
        await session.execute(
            text(
                "SELECT payload->>'customer_id', payload->>'to_state' FROM webhook_event "
                "WHERE event_type = 'community.membership_changed' AND payload->>'customer_id' = 'M2' ORDER BY id"
            )
        )
    ).all()
    assert [tuple(r) for r in outbox] == [("M2", "invited"), ("M2", "joined"), ("M2", "left")]


async def test_metrics_window_is_checked(client, as_role, session):
    await open_community(client, as_role)
    response = await client.get(
        "/v1/communities/young-families/metrics",
        params={"from": "2026-12-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
        headers=as_role("admin"),
    )
    assert response.status_code == 422 and response.json()["errors"][0]["parameter"] == "from"


async def test_invitations_wait_for_an_open_community(client, as_role, session):
    await make_customer(client, as_role, "Y1", birth_date=birth_for(30))
    await open_community(client, as_role, state="planned")
    response = await client.post(
        "/v1/communities/young-families/invitations",
        json={"customer_ids": ["Y1"], "channel": "mobile"},
        headers=as_role("admin"),
    )
    assert response.status_code == 409


async def test_erasure_removes_memberships_and_member_activity(client, as_role, session):
    await make_customer(client, as_role, "E1", birth_date=birth_for(30))
    await open_community(client, as_role)
    await _invite(client, as_role, "young-families", "E1")
    assert (await _move(client, as_role, "young-families", "E1", "joined", at=ago(days=1))).status_code == 200
    events = {"events": [{"event_id": "e1", "customer_id": "E1", "kind": "post", "occurred_at": ago(hours=1)}]}
    assert (
        await client.post("/v1/communities/young-families/activity-events", json=events, headers=as_role("app"))
    ).json()["accepted"] == 1
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'E1'"))
    count = text(
        "SELECT (SELECT count(*) FROM community_membership WHERE customer_id = :c) "
        "+ (SELECT count(*) FROM community_activity_event WHERE customer_id = :c) "
        "+ (SELECT count(*) FROM community_membership_move mv JOIN community_membership m ON m.id = mv.membership_id "
        "   WHERE m.customer_id = :c)"
    )
    assert await session.scalar(count, {"c": customer_id}) == 4
    assert (await client.delete("/v1/customers/E1", headers=as_role("admin"))).status_code == 204
    assert await session.scalar(count, {"c": customer_id}) == 0
