"""Schemathesis hooks for `schemathesis run` with tests/hardening/schemathesis/schemathesis.toml: the fuzzer sends
what a correct client would, where the API's contract depends on state or on now (no schema can say so).

Each rewrite below keeps a value that the schema allows allowed (so a negative case stays negative; schemathesis
re-validates a case a `before_call` hook changed) and changes only what a correct client would choose otherwise:

- Idempotency-Key: a fresh key per request. The same key with another request is a 422 by contract, and the
  generator draws short keys again and again.
- `from`/`to` (query) and `starts_at`/`ends_at` (body): in order, as a range is meant; a community's metrics
  window at most ten years, as documented.
- An event's `occurred_at`, a referral move's `at`: not in the future (the API refuses a future time).
- A tier override changed with If-Match: one is put in force first (If-Match: * means "only if there is one",
  so without one 412 is the right answer).

Nothing is filtered or dropped: every case is sent, and every answer checked.
"""

import re
import uuid
from datetime import UTC, datetime, timedelta

import requests
import schemathesis

IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
TEN_YEARS = timedelta(days=3650)


def _moment(value: object, *, end: bool = False) -> datetime | None:
    """The instant a query or body time names, as the API reads it (a date `to` includes that whole day)."""
    if not isinstance(value, str):
        return None
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fresh_idempotency_key(headers: dict) -> None:
    for name in list(headers):
        value = headers[name]
        if name.lower() == "idempotency-key" and isinstance(value, str) and IDEMPOTENCY_KEY.match(value):
            headers[name] = f"fuzz-{uuid.uuid4()}"


def _ordered(container: dict, start: str, end: str, *, max_window: timedelta | None = None) -> None:
    """`start` before `end`: swapped when reversed; a window too long or empty is shortened from the start."""
    begins, ends = _moment(container.get(start)), _moment(container.get(end), end=True)
    if begins is None or ends is None:
        return
    if begins >= ends:
        container[start], container[end] = container[end], container[start]
        begins, ends = _moment(container[start]), _moment(container[end], end=True)
        if begins is None or ends is None:
            return
    if begins >= ends or (max_window is not None and ends - begins > max_window):
        container[start] = _iso(ends - timedelta(days=30))


NOT_IN_FUTURE = {"occurred_at", "opened_at", "risk_assessed_at", "onboarded_at", "referred_at", "at", "as_of"}
"""Body fields the API refuses in the future (a report of something that happened)."""


def _not_in_future(value):
    """A copy of `value` with each time of NOT_IN_FUTURE that lies ahead of now moved to yesterday."""
    if isinstance(value, list):
        return [_not_in_future(item) for item in value]
    if not isinstance(value, dict):
        return value
    now = datetime.now(UTC)
    copy = {}
    for name, item in value.items():
        moment = _moment(item) if name in NOT_IN_FUTURE else None
        if moment is not None and moment > now:
            yesterday = now - timedelta(days=1)
            item = yesterday.date().isoformat() if len(item) == 10 else _iso(yesterday)
        copy[name] = _not_in_future(item)
    return copy


# Condition leaves name attributes of GET /v1/attributes; each operator and value type has one that takes it.
SET_OPERATORS = {"contains", "contains_any", "contains_none"}


def _attribute_for(op: object, value: object) -> str:
    values = value if isinstance(value, list) else [value]
    if op in SET_OPERATORS:
        return "held_products"
    if op == "is_null":
        return "age"
    if all(isinstance(v, bool) for v in values):
        return "marketing_consent"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "aum"
    return "segment"


def _known_attributes(value):
    """A copy of a rule's condition tree with each comparison naming an attribute that exists."""
    if isinstance(value, list):
        return [_known_attributes(item) for item in value]
    if not isinstance(value, dict):
        return value
    copy = {name: _known_attributes(item) for name, item in value.items()}
    if isinstance(copy.get("attr"), str) and "op" in copy:
        copy["attr"] = _attribute_for(copy["op"], copy.get("value"))
    return copy


def _get(case, kwargs: dict, path: str) -> requests.Response:
    base = case.operation.schema.get_base_url().rstrip("/")
    sent = {**(kwargs.get("headers") or {}), **(case.headers or {})}  # the run's -H key is among the case's
    headers = {k: v for k, v in sent.items() if k.lower() == "x-api-key"}
    return requests.get(base + path, headers=headers, timeout=30)


def _if_match_name(case) -> str | None:
    return next((name for name in (case.headers or {}) if name.lower() == "if-match"), None)


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.headers:
        _fresh_idempotency_key(case.headers)
    path = case.operation.path
    if case.query:
        window = TEN_YEARS if path.endswith("/metrics") else None
        _ordered(case.query, "from", "to", max_window=window)
    if isinstance(case.body, dict):
        body = _known_attributes(_not_in_future(case.body))
        _ordered(body, "starts_at", "ends_at")
        _one_referral_per_pair(body)
        if path == "/v1/referrals/{referral_id}/transitions":
            _the_referrals_referee(case, kwargs, body)
        case.body = body
    name = _if_match_name(case)
    if name is not None and case.method.upper() in ("PUT", "DELETE") and case.headers[name] == "*":
        # If-Match: * means "only if it exists": a client that read a 404 writes without it (PUT creates, DELETE
        # of nothing is a no-op); a client that read the document sends "*" as configured.
        if _get(case, kwargs, case.formatted_path).status_code == 404:
            del case.headers[name]


REFEREES = ("C00000003", "C00000007")  # demo customers (tests/hardening/test_fuzz_data.py)


def _one_referral_per_pair(body: dict) -> None:
    """A customer cannot refer themselves: the referee is another demo customer."""
    referrer, referee = body.get("referrer_customer_id"), body.get("referee_customer_id")
    if isinstance(referrer, str) and referrer == referee:
        body["referee_customer_id"] = REFEREES[0] if referrer != REFEREES[0] else REFEREES[1]


def _the_referrals_referee(case, kwargs: dict, body: dict) -> None:
    """A move names the referral's own referee (when it has one): read it first, as a client would."""
    if not isinstance(body.get("referee_customer_id"), str):
        return
    found = _get(case, kwargs, f"/v1/referrals/{case.path_parameters.get('referral_id')}")
    if found.status_code == 200 and found.json().get("referee_customer_id"):
        body["referee_customer_id"] = found.json()["referee_customer_id"]
