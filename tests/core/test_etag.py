"""ETags (app/core/etag.py) on an edited document, the webhook subscription: a strong tag on GET, 304 for
If-None-Match, 412 problem+json for a stale If-Match on PATCH and DELETE, and writes without If-Match applied."""

from app.core.etag import coded_etag, etag_of, matches_if_match, matches_if_none_match
from tests.factories import customer_body

HOOK = {"url": "https://hooks.bank.example/tierwise", "event_types": ["tier.upgraded"]}


async def _hook(client, admin) -> tuple[str, str]:
    created = await client.post("/v1/webhooks", json=HOOK, headers=admin)
    path = created.headers["Location"]
    tag = (await client.get(path, headers=admin)).headers["ETag"]
    assert created.headers["ETag"] == tag  # the created document's tag, ready for If-Match
    return path, tag


async def test_a_get_carries_a_strong_etag_and_if_none_match_gives_304(client, as_role):
    admin = as_role("admin")
    path, tag = await _hook(client, admin)
    assert tag.startswith('"') and not tag.startswith("W/")
    unchanged = await client.get(path, headers={**admin, "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["ETag"] == tag
    weak_too = await client.get(path, headers={**admin, "If-None-Match": f'"other", W/{tag}'})
    assert weak_too.status_code == 304
    await client.patch(path, json={"description": "changed"}, headers=admin)
    changed = await client.get(path, headers={**admin, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag and changed.json()["description"] == "changed"


async def test_a_patch_with_a_stale_if_match_is_a_412_and_changes_nothing(client, as_role):
    admin = as_role("admin")
    path, tag = await _hook(client, admin)
    first = await client.patch(path, json={"description": "mine"}, headers={**admin, "If-Match": tag})
    assert first.status_code == 200 and first.headers["ETag"] != tag
    assert first.headers["ETag"] == (await client.get(path, headers=admin)).headers["ETag"]
    stale = await client.patch(path, json={"description": "theirs"}, headers={**admin, "If-Match": tag})
    assert stale.status_code == 412 and stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["current_etag"] == first.headers["ETag"] == stale.headers["ETag"]
    assert (await client.get(path, headers=admin)).json()["description"] == "mine"
    weak = await client.patch(
        path, json={"description": "weak"}, headers={**admin, "If-Match": "W/" + first.headers["ETag"]}
    )
    assert weak.status_code == 412  # If-Match compares strongly
    same = await client.patch(path, json={"description": "mine"}, headers={**admin, "If-Match": first.headers["ETag"]})
    assert same.status_code == 200 and same.headers["ETag"] == first.headers["ETag"]  # nothing changed
    blind = await client.patch(path, json={"description": "no precondition"}, headers=admin)
    assert blind.status_code == 200  # without If-Match the write applies
    anything = await client.patch(path, json={"status": "paused"}, headers={**admin, "If-Match": "*"})
    assert anything.status_code == 200 and anything.json()["status"] == "paused"


async def test_a_delete_with_a_stale_if_match_is_a_412_and_with_the_current_one_deletes(client, as_role):
    admin = as_role("admin")
    path, tag = await _hook(client, admin)
    await client.patch(path, json={"description": "edited"}, headers=admin)
    assert (await client.delete(path, headers={**admin, "If-Match": tag})).status_code == 412
    current = (await client.get(path, headers=admin)).headers["ETag"]
    assert (await client.delete(path, headers={**admin, "If-Match": current})).status_code == 204
    assert (await client.get(path, headers=admin)).status_code == 404


def test_the_etag_is_the_hash_of_the_canonical_representation():
    assert etag_of({"a": 1, "b": [1, 2]}) == etag_of({"b": [1, 2], "a": 1})
    assert etag_of({"a": 1}) != etag_of({"a": 2})
    assert matches_if_none_match('"x", "y"', '"y"') and not matches_if_none_match(None, '"y"')
    assert matches_if_match(None, '"y"') and matches_if_match("*", '"y"') and not matches_if_match('W/"y"', '"y"')


def test_the_gzip_form_of_a_tag_is_distinct_and_names_the_same_document():
    assert coded_etag('"abc"') == '"abc-gzip"' and coded_etag('"abc-gzip"') == '"abc-gzip"'
    assert coded_etag('W/"abc"') == 'W/"abc"'  # a weak tag already allows another coding
    assert matches_if_none_match('"abc-gzip"', '"abc"') and matches_if_none_match('W/"abc-gzip"', '"abc"')
    assert matches_if_match('"abc-gzip"', '"abc"') and matches_if_match('"x", "abc"', '"abc"')
    assert not matches_if_match('W/"abc-gzip"', '"abc"') and not matches_if_match('"abd-gzip"', '"abc"')
    assert not matches_if_none_match('"ab-gzip"', '"abc"') and not matches_if_match('"abc-gzip-gzip"', '"abc"')


async def test_a_conditional_patch_of_a_customer_that_does_not_exist_is_a_404(client, as_role):
    """RFC 9110 13.2.1: preconditions apply only where the answer would otherwise be 2xx, so If-Match (even `*`)
    on a customer that does not exist is the 404 it is without it, not a 412; a PUT, which would create, is a 412."""
    headers = {**as_role("integration"), "If-Match": "*"}
    patched = await client.patch("/v1/customers/NOBODY-17", json={"marketing_consent": True}, headers=headers)
    assert patched.status_code == 404, patched.text
    assert (
        await client.patch("/v1/customers/NOBODY-17", json={"marketing_consent": True}, headers=as_role("integration"))
    ).status_code == 404
    created = await client.put("/v1/customers/NOBODY-17", json=customer_body(), headers=headers)
    assert created.status_code == 412, created.text  # If-Match: * means "only if it exists"
