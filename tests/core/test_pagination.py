"""A list's `cursor` publishes its form (a pattern per list: as many integers as its sort key), and what the pattern
allows is what the decoder accepts: schemathesis found lists refusing schema-valid cursors while the schema said
only `string`. Cursors handed out before (base64 of 'k:' and the key) are still honoured."""

import base64
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.config import Settings
from app.core.pagination import cursor_pattern, decode_key_cursor, encode_cursor
from app.main import create_app

SPEC = create_app(Settings(environment="test")).openapi()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(1, 3).flatmap(lambda parts: st.tuples(st.just(parts), st.from_regex(cursor_pattern(parts)))))
def test_every_cursor_the_pattern_allows_is_accepted(drawn):
    parts, cursor = drawn
    cursor = cursor.rstrip("\n")  # Python's `$` also matches before a final newline; JSON Schema's does not
    assert len(decode_key_cursor(cursor, parts)) == parts


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 10**18 - 1), min_size=1, max_size=3))
def test_the_cursors_handed_out_match_the_pattern_and_round_trip(key):
    cursor = encode_cursor(*key)
    assert re.search(cursor_pattern(len(key)), cursor)
    assert decode_key_cursor(cursor, len(key)) == tuple(key)


def test_a_cursor_of_before_is_still_honoured():
    legacy = base64.urlsafe_b64encode(b"k:17,4").decode().rstrip("=")
    assert decode_key_cursor(legacy, 2) == (17, 4)


def test_every_list_publishes_the_pattern_of_its_cursor():
    lists = {
        path: parameter["schema"]
        for path, operations in SPEC["paths"].items()
        for parameter in operations.get("get", {}).get("parameters", [])
        if parameter["name"] == "cursor"
    }
    assert len(lists) > 20
    assert {path: schema.get("pattern") for path, schema in lists.items() if not schema.get("pattern")} == {}
    assert lists["/v1/tier-transitions"]["pattern"] == cursor_pattern(2)
    assert lists["/v1/care-calendar"]["pattern"] == cursor_pattern(3, (9, 18, 9))  # a day and an occasion: int4
    assert lists["/v1/customers"]["pattern"] == cursor_pattern(1)
