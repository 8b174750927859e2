"""The OpenAPI document as an integrator's generator reads it: short operation ids, described tags, and every error
documented as the application/problem+json the service sends, on exactly the operations that can send it."""

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.core.errors import PROBLEM_JSON, RATE_LIMIT_HEADERS, Problem, problem_responses
from app.core.replicas import CONSISTENCY_HEADER

TAGS = [
    {
        "name": "customers",
        "description": "Customer profiles by the bank's own id, their holdings with balance "
        "history, NDJSON bulk import and erasure. Every write re-tiers the customer.",
    },
    {"name": "events", "description": "Activity from core banking: transactions, app logins and referrals."},
    {
        "name": "attributes",
        "description": "The attribute catalog conditions may use: built-in metrics and the "
        "bank's typed custom attributes.",
    },
    {
        "name": "tiers",
        "description": "A customer's tiers with since-when, downgrade grace and the explanation; "
        "overrides, history, the change feed and the care calendar.",
    },
    {
        "name": "tier-policies",
        "description": "Versioned tier definitions (draft, active, retired): validate, "
        "what-if, simulate against the population, activate, roll back.",
    },
    {"name": "tier-runs", "description": "Batch evaluation of every customer under a policy, in the background."},
    {
        "name": "recommendations",
        "description": "Next-best products for a customer, with reasons, and the contact "
        "policy that keeps offers from fatiguing.",
    },
    {
        "name": "products",
        "description": "The product catalog: eligibility, risk level, channels, sales window and "
        "how hard to push each product.",
    },
    {
        "name": "feedback",
        "description": "What customers did with recommendations, NPS and CSAT answers, and "
        "complaints with their lifecycle.",
    },
    {
        "name": "reports",
        "description": "Tier distribution and migrations, the recommendation funnel with its "
        "holdout uplift, satisfaction by tier.",
    },
    {
        "name": "benefits",
        "description": "What each tier gives (权益): the benefit catalogue, a customer's benefits in force with the "
        "uses left, what a pending downgrade would take, the gap to the next tier, and uses.",
    },
    {
        "name": "engagement",
        "description": "Communities, activities and referrals: audiences in the rule language, invitations under "
        "consent and the contact policy, memberships, RSVPs with a waiting list, metrics and results.",
    },
    {
        "name": "relationship-managers",
        "description": "Relationship managers (客户经理): managers and the tiers they serve, assignment runs, a "
        "customer's manager and its history, coverage, the contact log, cadences and worklists.",
    },
    {
        "name": "ranker-models",
        "description": "The learned ranker's model versions (admin only): list, read, serve one, roll back (audited).",
    },
    {"name": "api-keys", "description": "Keys for calling systems, by role (admin only). A key is shown once."},
    {"name": "audit", "description": "Who changed policies, products, keys and overrides, and how (admin only)."},
    {"name": "operations", "description": "Liveness, readiness and Prometheus metrics; no API key needed."},
]

REF = "#/components/schemas/"
# Answers given once the API key is known and its rate limit taken (app.core.security.authorize), which carry the
# key's RateLimit headers: success, redirection and the errors found after authentication. A 400, 413 or 422 of a
# body or parameter FastAPI refuses before its dependencies run, a 401 and a 503 may come without them.
RATE_LIMITED_ANSWER = ("2", "3", "403", "404", "409", "410", "412", "428")
RATE_LIMIT_HEADER_REFS = {name: {"$ref": f"#/components/headers/{name}"} for name in RATE_LIMIT_HEADERS}
ERROR_MEDIA = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def operation_id(route: APIRoute) -> str:
    """The route function's name (get_customer_tiers): short, stable, and what a generated client calls it."""
    return route.name


def _statuses(path: str, operation: dict[str, Any]) -> set[int]:
    """The problem+json errors an operation can really answer, read off what it declares: 401, 403 and 429 where
    a key is checked (the rate limit applies after authentication), 400 (a body that is not UTF-8 text), 413 and
    422 where a JSON body is read, 422 where parameters are validated, 503 (database away) on every /v1 route."""
    statuses = set()
    if operation.get("security"):
        statuses |= {401, 403, 429}
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        statuses |= {400, 413, 422}
    if operation.get("parameters"):
        statuses.add(422)
    if path.startswith("/v1/"):
        statuses.add(503)
    return statuses


def _merge_identical_input_output(document: dict[str, Any]) -> dict[str, Any]:
    """One schema for a model whose "-Input" and "-Output" forms say the same: FastAPI splits a recursive model
    (the condition language) in two only because each form refers to its own name."""
    schemas = document["components"]["schemas"]
    pairs = {
        name[: -len("-Input")]
        for name in schemas
        if name.endswith("-Input") and name[: -len("-Input")] + "-Output" in schemas
    }

    def renamed(value: Any, names: set[str]) -> str:
        text = json.dumps(value, sort_keys=True)
        for name in names:
            for suffix in ("-Input", "-Output"):
                text = text.replace(f'"{REF}{name}{suffix}"', f'"{REF}{name}"')
        return text

    while True:  # a pair stays split when its forms differ once every mergeable pair is merged
        differing = {
            name
            for name in pairs
            if renamed(schemas[name + "-Input"], pairs) != renamed(schemas[name + "-Output"], pairs)
        }
        if not differing:
            break
        pairs -= differing
    for name in pairs:
        schemas[name] = schemas.pop(name + "-Input")
        del schemas[name + "-Output"]
    return json.loads(renamed(document, pairs))


CONSISTENCY_TOKEN_HEADER = {
    "description": "With read replicas configured: the primary's WAL position after this write committed (a "
    "pg_lsn, e.g. 0/3000060). Send it back in the Tierwise-Consistency request header of a later read to see this "
    "write: a replica that has replayed it, or the primary, serves that read.",
    "schema": {"type": "string", "pattern": "^[0-9A-F]{1,8}/[0-9A-F]{1,8}$", "examples": ["0/3000060"]},
}
WRITE_METHODS = ("post", "put", "patch", "delete")


def _document_consistency_token(document: dict[str, Any]) -> None:
    """The consistency token (app/core/replicas.py) on every write's success responses."""
    document.setdefault("components", {}).setdefault("headers", {})[CONSISTENCY_HEADER] = CONSISTENCY_TOKEN_HEADER
    reference = {"$ref": f"#/components/headers/{CONSISTENCY_HEADER}"}
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            if method in WRITE_METHODS:
                for status, response in operation.get("responses", {}).items():
                    if status.startswith("2"):
                        response.setdefault("headers", {})[CONSISTENCY_HEADER] = reference


def install_openapi(app: FastAPI) -> None:
    """Build the document once: FastAPI's, with the errors each operation can answer added (statuses a route
    declares itself, such as 404 or 409, keep their descriptions), every 4xx and 5xx answer documented as
    application/problem+json with the Problem schema (FastAPI would put a model under application/json), and the
    RateLimit headers on the answers of operations that take an API key (RATE_LIMITED_ANSWER)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            for path, operations in document["paths"].items():
                for operation in operations.values():
                    responses = operation.setdefault("responses", {})
                    for status, response in problem_responses(*sorted(_statuses(path, operation))).items():
                        if responses.get(str(status), {}).get("description") in (None, "Validation Error"):
                            responses[str(status)] = response  # FastAPI's own 422 is the one it never sends
                    for status, response in responses.items():
                        if status[0] in "45":
                            response["content"] = ERROR_MEDIA
                        if operation.get("security") and status.startswith(RATE_LIMITED_ANSWER):
                            response["headers"] = {**response.get("headers", {}), **RATE_LIMIT_HEADER_REFS}
                    operation["responses"] = dict(sorted(responses.items()))
                    if "428" in responses:  # If-Match is required where its absence is answered 428
                        for parameter in operation.get("parameters", []):
                            if parameter["in"] == "header" and parameter["name"].lower() == "if-match":
                                parameter["required"] = True
            document.setdefault("components", {})["headers"] = dict(RATE_LIMIT_HEADERS)
            _document_consistency_token(document)
            schemas = document["components"].setdefault("schemas", {})
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(problem.pop("$defs", {}), Problem=problem)
            for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, replaced above
                schemas.pop(unused, None)
            document = _merge_identical_input_output(document)
            document["components"]["schemas"] = dict(sorted(document["components"]["schemas"].items()))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi
