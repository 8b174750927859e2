"""The test data tests/hardening/schemathesis/ gives `schemathesis run` exist in the bank `tierwise demo -n 50`
makes: every customer id, product code, policy key, tier (under its policy), benefit code and attribute the config
and its hooks name. Without this, a renamed demo product or tier would quietly turn the fuzzer's requests into
refusals again (bench/RELIABILITY.md, "Schema-valid requests")."""

import importlib.util
import tomllib
from pathlib import Path

from sqlalchemy import select

from app.benefits.models import Benefit
from app.customers.models import Customer
from app.demo import generate_demo_bank, load_demo_benefits
from app.managers.demo import DEMO_MANAGERS
from app.products.models import Product
from app.rules.attributes import list_attributes, load_catalog
from app.tiering.models import TierPolicy, TierPolicyVersion
from app.tiering.policies import load_default_policies

FOLDER = Path(__file__).parent / "schemathesis"
CONFIG = tomllib.loads((FOLDER / "schemathesis.toml").read_text())


def _hooks():
    spec = importlib.util.spec_from_file_location("fuzz_hooks", FOLDER / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _values(dictionary: str) -> list:
    return CONFIG["dictionaries"][dictionary]["values"]


def _fixed(operation: str) -> dict:
    """The fixed parameter values of the `[[operations]]` entry named (or matched) by `operation`."""
    entry = next(o for o in CONFIG["operations"] if operation in (o.get("include-name"), o.get("include-name-regex")))
    return entry["parameters"]


def test_every_binding_names_a_dictionary_and_the_hooks_load():
    named = [v["dictionary"] for v in CONFIG["parameters"].values() if isinstance(v, dict)]
    for operation in CONFIG["operations"]:
        bindings = operation["parameters"].values()
        named += [v["dictionary"] for v in bindings if isinstance(v, dict) and "dictionary" in v]
    assert set(named) <= set(CONFIG["dictionaries"])
    assert CONFIG["hooks"] == "tests/hardening/schemathesis/hooks.py"
    assert callable(_hooks().before_call)


async def test_the_config_names_what_the_demo_bank_has(session):
    await generate_demo_bank(session, 50, seed=7)
    await load_default_policies(session)
    await load_demo_benefits(session)
    hooks = _hooks()

    customers = set(await session.scalars(select(Customer.external_id)))
    erased = _fixed("DELETE /v1/customers/{customer_id}")["path.customer_id"]
    named_customers = set(_values("customers")) | set(hooks.REFEREES)
    assert named_customers <= customers and erased in customers
    assert erased not in named_customers  # the erasure's customer is no other operation's

    assert set(_values("products")) | set(hooks.PRODUCTS) <= set(await session.scalars(select(Product.code)))
    assert set(_values("benefits")) <= set(await session.scalars(select(Benefit.code)))

    rows = await session.execute(select(TierPolicy.key, TierPolicyVersion.tiers).join(TierPolicyVersion))
    tiers = {key: {tier["code"] for tier in version_tiers} for key, version_tiers in rows}
    assert set(_values("policies")) == set(tiers)
    assert set(_values("loyalty_tiers")) | set(hooks.LOYALTY_TIERS) <= tiers["loyalty"]
    assert set(_values("managers")) <= {manager[0] for manager in DEMO_MANAGERS}  # `tierwise demo` loads them
    assert set(_values("wealth_tiers")) <= tiers["wealth"]
    assert _fixed("GET /v1/customers")["query.policy_key"] == "loyalty"
    assert _fixed("PUT /v1/contact-cadences/{policy_key}/{tier}")["path.policy_key"] == "wealth"
    served = _fixed("^(POST|PATCH) /v1/relationship-managers")
    assert set(served["body.serves.tiers"]) <= tiers[served["body.serves.policy_key"]]
    audience = {"audience_policy_key": "x", "audience_tiers": ["a", "b", "c"]}
    hooks._audience(audience)
    assert set(audience["audience_tiers"]) <= tiers[audience["audience_policy_key"]]
    override = _fixed("^(GET|PUT|DELETE) /v1/customers/\\{customer_id\\}/tiers/\\{policy_key\\}/override$")
    assert override["path.policy_key"] == "wealth"
    quiet = _fixed("PUT /v1/worklist-rules")
    assert set(quiet["body.gone_quiet.quiet_tiers"]) <= tiers[quiet["body.gone_quiet.lifecycle_policy_key"]]
    assert set(quiet["body.gone_quiet.valuable_tiers"]) <= tiers[quiet["body.gone_quiet.valuable_policy_key"]]

    attributes = {a.name: a for a in list_attributes(await load_catalog(session))}
    what_if = _fixed("POST /v1/tier-policies/{policy_key}/versions/{version}/evaluate")["body.attributes"]
    assert set(what_if) <= set(attributes)
    for op, value in (("contains", "x"), ("is_null", True), ("eq", True), ("between", [1, 2]), ("in", ["retail"])):
        attribute = attributes[hooks._attribute_for(op, value)]
        assert op in attribute.operators, (op, attribute)
    assert hooks._attribute_for("lt", "2026-01-01") == hooks.DATE_ATTRIBUTE not in attributes  # the hooks declare it
