"""The ranker model admin API: versions listed newest first a page at a time, read one, serve one, roll back;
serving and rollback are audited with the calling key, and the recommendations rank with the version serving."""

from app.recommendations.learned import registry
from tests.recommendations.ranker_history import load_history
from tests.recommendations.test_learned_ranker import _train


async def test_list_get_serve_and_roll_back_audited(client, as_role, session):
    admin = as_role("admin")
    await load_history(session, customers=120)
    _, result = await _train(session)
    versions = [(await registry.store_model(session, result, "test")).version for _ in range(3)]
    await session.commit()

    first = await client.get("/v1/ranker-models", params={"limit": 2}, headers=admin)
    assert first.status_code == 200, first.text
    assert [m["version"] for m in first.json()["items"]] == versions[::-1][:2]
    assert all(m["status"] == "candidate" and "model" not in m for m in first.json()["items"])
    rest = await client.get(
        "/v1/ranker-models", params={"limit": 2, "cursor": first.json()["next_cursor"]}, headers=admin
    )
    assert [m["version"] for m in rest.json()["items"]] == [versions[0]] and rest.json()["next_cursor"] is None

    one = (await client.get(f"/v1/ranker-models/{versions[1]}", headers=admin)).json()
    assert one["metrics"]["map7"] == result.metrics["map7"] and "credit_card_gold" in one["products"]
    assert (await client.get("/v1/ranker-models/999999", headers=admin)).status_code == 404
    assert (await client.post("/v1/ranker-models/rollback", headers=admin)).status_code == 409  # none served yet

    for version in versions[:2]:
        served = await client.post(f"/v1/ranker-models/{version}/serve", headers=admin)
        assert served.status_code == 200 and served.json()["status"] == "serving"
    assert (await client.post("/v1/ranker-models/999999/serve", headers=admin)).status_code == 404
    back = await client.post("/v1/ranker-models/rollback", headers=admin)
    assert back.status_code == 200 and back.json()["version"] == versions[0]
    statuses = {
        m["version"]: m["status"] for m in (await client.get("/v1/ranker-models", headers=admin)).json()["items"]
    }
    assert statuses == {versions[0]: "serving", versions[1]: "retired", versions[2]: "candidate"}

    audit = (await client.get("/v1/audit", params={"entity_type": "ranker_model"}, headers=admin)).json()["items"]
    trail = sorted(((e["action"], e["before"], e["after"]) for e in audit), key=str)
    assert trail == sorted(
        [
            ("ranker_model.serve", {"serving_version": None}, {"serving_version": versions[0]}),
            ("ranker_model.serve", {"serving_version": versions[0]}, {"serving_version": versions[1]}),
            ("ranker_model.rollback", {"serving_version": versions[1]}, {"serving_version": versions[0]}),
        ],
        key=str,
    )
    assert {e["actor"] for e in audit} == {"test-admin"}
    assert (await client.post(f"/v1/ranker-models/{versions[1]}/serve", headers=as_role("app"))).status_code == 403
