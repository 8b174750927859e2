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
- The NDJSON bulk intakes (customers, holdings) publish their body as bytes (`format: binary`): sent as generated
  (schemathesis has no serializer of its own for application/x-ndjson, and left both untested before).

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
    value = value.upper()  # 2026-11-01t00:00z: the API takes T and Z in either case
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


NOT_IN_FUTURE = {
    "occurred_at",
    "opened_at",
    "risk_assessed_at",
    "onboarded_at",
    "referred_at",
    "at",
    "as_of",
    "contacted_at",
    "birth_date",
}
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


ORDER_OPERATORS = {"lt", "lte", "gt", "gte", "between"}
DATE_ATTRIBUTE = "fuzz_reviewed_on"  # a custom attribute of type date, declared once per run (_declare_date_attribute)
_declared: list[bool] = []


def _declare_date_attribute(case, kwargs: dict) -> None:
    """Test data: the rule language orders dates, and the demo bank declares no date attribute."""
    if not _declared:
        _send(case, kwargs, "PUT", f"/v1/attributes/custom/{DATE_ATTRIBUTE}", {"type": "date"})
        _declared.append(True)


def _attribute_for(op: object, value: object) -> str:
    """An attribute that takes `op` with a value of this type (a date by order: the date attribute the hooks declare,
    DATE_ATTRIBUTE)."""
    values = value if isinstance(value, list) else [value]
    if op in SET_OPERATORS:
        return "held_products"
    if op == "is_null":
        return "age"
    if all(isinstance(v, bool) for v in values):
        return "marketing_consent"
    if all(isinstance(v, str) for v in values):
        return DATE_ATTRIBUTE if op in ORDER_OPERATORS else "segment"
    return "aum"


def _known_attributes(value):
    """A copy of a rule's condition tree with each comparison naming an attribute that exists."""
    if isinstance(value, list):
        return [_known_attributes(item) for item in value]
    if not isinstance(value, dict):
        return value
    copy = {name: _known_attributes(item) for name, item in value.items()}
    if isinstance(copy.get("attr"), str) and "op" in copy:
        copy["attr"] = _attribute_for(copy["op"], copy.get("value"))
        bounds = copy.get("value")
        if copy["op"] == "between" and isinstance(bounds, list) and len(bounds) == 2:
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in bounds) or all(
                isinstance(v, str) for v in bounds
            ):
                copy["value"] = sorted(bounds)  # [low, high]
    return copy


MAX_DEPTH = 8  # app.rules.schema.MAX_DEPTH: a condition nests at most 8 levels (documented)
CONDITION_FIELDS = {"condition", "audience", "eligibility"}


def _within_depth(node, depth: int = 1):
    """A condition nested at most MAX_DEPTH levels: deeper nodes become `{"always": true}`, as a client keeps to
    the documented depth."""
    if not isinstance(node, dict):
        return node
    if depth >= MAX_DEPTH and any(combinator in node for combinator in ("all", "any", "not")):
        return {"always": True}  # a leaf at the deepest level
    node = dict(node)
    for combinator in ("all", "any"):
        if isinstance(node.get(combinator), list):
            node[combinator] = [_within_depth(child, depth + 1) for child in node[combinator]]
    if isinstance(node.get("not"), dict):
        node["not"] = _within_depth(node["not"], depth + 1)
    return node


def _within_size(node):
    """A condition of at most 200 nodes (app/rules/schema.py MAX_NODES), as a client keeps to the documented size:
    once MAX_NODES - MAX_DEPTH nodes are kept, the rest of each open all/any is left out (one `{"always": true}`
    where a list would be empty: at most one per open level, so MAX_DEPTH more)."""
    left = [200 - MAX_DEPTH]

    def visit(item):
        if not isinstance(item, dict):
            return item
        left[0] -= 1
        item = dict(item)
        for combinator in ("all", "any"):
            if isinstance(item.get(combinator), list) and item[combinator]:
                kept = []
                for child in item[combinator]:
                    if left[0] <= 0:
                        kept = kept or [{"always": True}]
                        break
                    kept.append(visit(child))
                item[combinator] = kept
        if isinstance(item.get("not"), dict):
            item["not"] = visit(item["not"]) if left[0] > 0 else {"always": True}
        return item

    return visit(node)


def _conditions_within_depth(value):
    if isinstance(value, list):
        return [_conditions_within_depth(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {
        name: _within_size(_within_depth(item)) if name in CONDITION_FIELDS else _conditions_within_depth(item)
        for name, item in value.items()
    }


def _send(case, kwargs: dict, method: str, path: str, body: dict | None = None) -> requests.Response:
    base = case.operation.schema.get_base_url().rstrip("/")
    sent = {**(kwargs.get("headers") or {}), **(case.headers or {})}  # the run's -H key is among the case's
    headers = {k: v for k, v in sent.items() if k.lower() == "x-api-key"}
    return requests.request(method, base + path, json=body, headers=headers, timeout=30)


def _get(case, kwargs: dict, path: str) -> requests.Response:
    return _send(case, kwargs, "GET", path)


def _if_match_name(case) -> str | None:
    return next((name for name in (case.headers or {}) if name.lower() == "if-match"), None)


# Any bytes, as generated (the intake reads them line by line; a bad line is a rejection in its answer).
schemathesis.serializer.alias("application/x-ndjson", "application/octet-stream")


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.headers:
        _fresh_idempotency_key(case.headers)
    path = case.operation.path
    if case.query:
        window = TEN_YEARS if path.endswith("/metrics") else None
        _ordered(case.query, "from", "to", max_window=window)
        begins, now = _moment(case.query.get("from")), datetime.now(UTC)
        if "to" not in case.query and begins is not None and (begins >= now or (window and now - begins > window)):
            case.query["from"] = _iso(datetime.now(UTC) - timedelta(days=30))  # `to` is now: `from` before it
    if path == "/v1/attributes/custom/{name}" and (case.path_parameters or {}).get("name") == DATE_ATTRIBUTE:
        case.path_parameters["name"] = f"{DATE_ATTRIBUTE}_other"  # the date attribute the hooks declare stays a date
    if isinstance(case.body, dict):
        _declare_date_attribute(case, kwargs)
        body = _conditions_within_depth(_known_attributes(_not_in_future(case.body)))
        for start, end in (("starts_at", "ends_at"), ("valid_from", "valid_to"), ("active_from", "active_to")):
            _ordered(body, start, end)
        _distinct(body.get("holdings"), "product_code", PRODUCTS)
        codes = body.get("benefit_codes")
        if isinstance(codes, list) and all(isinstance(code, str) for code in codes):
            body["benefit_codes"] = list(dict.fromkeys(codes))
        if path == "/v1/benefits/{benefit_code}":
            _usage_pair(case, kwargs, body)
        if isinstance(body.get("attachments"), list):  # a tier of a policy once, a loyalty tier
            pairs = {}
            for item in body["attachments"]:
                if isinstance(item, dict) and item.get("policy_key") == "loyalty" and isinstance(item.get("tier"), str):
                    item["tier"] = item["tier"] if item["tier"] in LOYALTY_TIERS else LOYALTY_TIERS[0]
                key = (item.get("policy_key"), item.get("tier")) if isinstance(item, dict) else id(item)
                pairs.setdefault(repr(key), item)
            body["attachments"] = list(pairs.values())
        _audience(body)
        if path == "/v1/customers/{customer_id}/benefits/{benefit_code}/uses":
            _benefit_channel(case, kwargs, body)
        if path == "/v1/customers/{customer_id}" and case.method.upper() == "PATCH":
            _risk_assessed(case, kwargs, body)
        if path == "/v1/manager-tasks/{task_id}" and body.get("state") == "snoozed":
            _after_today(body, "snoozed_until")
        if case.method.upper() == "PATCH" and path in STORED_RANGES:
            _ordered_with_stored(case, kwargs, body, *STORED_RANGES[path])
        if isinstance(body.get("tiers"), list):
            _catch_all_last(body["tiers"])
            _one_per(body["tiers"], "code")
        if path == "/v1/contact-policy" and isinstance(body.get("rules"), list):
            _one_per(body["rules"], "name")
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
LOYALTY_TIERS = ("iron_fan", "core", "casual")
PRODUCTS = (  # the demo catalogue
    "current_account", "savings_account", "term_deposit_12m", "fx_account", "business_account", "money_market_fund",
    "bond_fund", "balanced_fund", "equity_fund", "structured_note", "private_banking_portfolio", "pension_plan",
    "life_insurance", "home_insurance", "travel_insurance", "mortgage", "personal_loan", "auto_loan",
    "sme_credit_line", "credit_card_classic", "credit_card_gold", "credit_card_platinum",
)  # fmt: skip


def _distinct(items: object, field: str, known: tuple[str, ...]) -> None:
    """Each item of a list names another product of the catalogue: a holding set has each product once (a list
    longer than the catalogue keeps one holding per product: a client holds no product twice), and a code the
    generator drew beside the config's dictionary (it mixes both) becomes a product the bank has."""
    if not isinstance(items, list):
        return
    seen: set = set()
    for item in list(items):
        code = item.get(field) if isinstance(item, dict) else None
        if not isinstance(code, str):
            continue
        if code in seen or code not in known:
            code = next((k for k in known if k not in seen), None)
            if code is None:  # every product named already
                del items[next(i for i, other in enumerate(items) if other is item)]  # this one, not an equal one
                continue
            item[field] = code
        seen.add(code)


def _usage_pair(case, kwargs: dict, body: dict) -> None:
    """usage_limit and usage_period go together in the benefit as changed: a client setting one of them on a
    benefit that has neither sets both (a period of a month, a limit of one)."""
    limit, period = body.get("usage_limit"), body.get("usage_period")
    if (limit is None) == (period is None):
        return
    found = _get(case, kwargs, case.formatted_path)
    if found.status_code != 200:
        return
    current = found.json()
    if limit is not None and body.get("usage_period", current.get("usage_period")) is None:
        body["usage_period"] = "month"
    if period is not None and body.get("usage_limit", current.get("usage_limit")) is None:
        body["usage_limit"] = 1


def _audience(body: dict) -> None:
    """An audience's policy is a demo policy and its tiers are that policy's (as many as were drawn, at most 3)."""
    if isinstance(body.get("audience_policy_key"), str):
        body["audience_policy_key"] = "loyalty"
    tiers = body.get("audience_tiers")
    if isinstance(tiers, list) and tiers and all(isinstance(t, str) for t in tiers):
        body["audience_tiers"] = ["iron_fan", "core", "casual"][: len(tiers)]


def _benefit_channel(case, kwargs: dict, body: dict) -> None:
    """A use is taken on one of the benefit's channels: read them first."""
    found = _get(case, kwargs, f"/v1/benefits/{case.path_parameters.get('benefit_code')}")
    channels = found.json().get("channels") if found.status_code == 200 else None
    if isinstance(body.get("channel"), str) and channels and body["channel"] not in channels:
        body["channel"] = channels[0]


def _risk_assessed(case, kwargs: dict, body: dict) -> None:
    """A risk level goes with the date it was assessed, given or stored: a client setting one sends the date."""
    if body.get("risk_level") is not None and "risk_assessed_at" not in body:
        body["risk_assessed_at"] = _iso(datetime.now(UTC) - timedelta(days=1))
    elif "risk_assessed_at" in body and body["risk_assessed_at"] is None and "risk_level" not in body:
        found = _get(case, kwargs, case.formatted_path)
        if found.status_code == 200 and found.json().get("risk_level") is not None:
            body["risk_level"] = None  # clearing the date clears the level with it


# The documents a PATCH may change one end of a range of, kept in order with the stored other end.
STORED_RANGES = {
    "/v1/products/{product_code}": ("active_from", "active_to"),
    "/v1/activities/{activity_key}": ("starts_at", "ends_at"),
    "/v1/benefits/{benefit_code}": ("valid_from", "valid_to"),
}


def _ordered_with_stored(case, kwargs: dict, body: dict, start: str, end: str) -> None:
    """A change of one end of a range keeps it after (before) the stored other end."""
    if (start in body) == (end in body):
        return
    found = _get(case, kwargs, case.formatted_path)
    if found.status_code == 200:
        merged = {start: found.json().get(start), end: found.json().get(end), **body}
        _ordered(merged, start, end)
        body.update({name: merged[name] for name in (start, end) if name in body})
        begins, ends = _moment(merged[start]), _moment(merged[end])  # None: not a time this reads (left as drawn)
        if begins is not None and ends is not None and begins >= ends:
            body[end] = None  # the stored start is later still: the change clears the end


def _one_per(items: list, field: str) -> None:
    """Items named by `field` differ (a policy's tier codes, the contact policy's rule names): a client writing two
    names them apart (later duplicates are left out)."""
    seen: set[str] = set()
    for item in list(items):
        name = item.get(field) if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen and len(items) > 1:
            items.remove(item)
        elif isinstance(name, str):
            seen.add(name)


def _catch_all_last(tiers: list) -> None:
    """Tiers after an unconditional one (`{"always": true}`) could never match: a client ends with its catch-all."""
    for index, tier in enumerate(tiers):
        if isinstance(tier, dict) and tier.get("condition") == {"always": True}:
            del tiers[index + 1 :]
            return


def _after_today(body: dict, field: str) -> None:
    """A snooze ends after today."""
    day = _moment(body.get(field))
    if day is None or day.date() <= datetime.now(UTC).date():
        body[field] = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()


def _one_referral_per_pair(body: dict) -> None:
    """A customer cannot refer themselves: the referee is another demo customer."""
    referrer, referee = body.get("referrer_customer_id"), body.get("referee_customer_id")
    if isinstance(referrer, str) and referrer == referee:
        body["referee_customer_id"] = REFEREES[0] if referrer != REFEREES[0] else REFEREES[1]


def _the_referrals_referee(case, kwargs: dict, body: dict) -> None:
    """A move names the referral's own referee (when it has one), and onboarding a code's referral names the customer
    it brought in: read it first, as a client would."""
    onboards = body.get("to_status") == "onboarded" and "referee_customer_id" not in body
    if not isinstance(body.get("referee_customer_id"), str) and not onboards:
        return
    found = _get(case, kwargs, f"/v1/referrals/{case.path_parameters.get('referral_id')}")
    if found.status_code != 200:
        return
    referral = found.json()
    if onboards:
        if referral.get("referee_customer_id") is None:
            body["referee_customer_id"] = next(r for r in REFEREES if r != referral.get("referrer_customer_id"))
        return
    if referral.get("referee_customer_id"):
        body["referee_customer_id"] = referral["referee_customer_id"]
    elif body["referee_customer_id"] == referral.get("referrer_customer_id"):
        body["referee_customer_id"] = next(r for r in REFEREES if r != body["referee_customer_id"])
