"""HTTP routes for tier policies: versioned tier definitions, their lifecycle, what-if and simulation."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Header, Path, Request, Response

from app.audit import service as audit_service
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, ConditionalGet, matches_if_none_match
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import INT_MAX, NO_NUL_PATTERN, ParamInteger
from app.tiering import policies, runs, simulation
from app.tiering.models import TierPolicy, TierPolicyVersion
from app.tiering.schemas import (
    SimulationResult,
    TierPolicyChangeRead,
    TierPolicyCreate,
    TierPolicyRead,
    TierPolicySummary,
    TierPolicyVersionCreate,
    TierPolicyVersionRead,
    TierPolicyVersionSummary,
    TierPolicyVersionUpdate,
    TierRead,
    WhatIfRequest,
    WhatIfResult,
)

router = APIRouter(prefix="/v1/tier-policies", tags=["tier-policies"])

READ = [require_scope(Scope.POLICIES_READ)]
WRITE = [require_scope(Scope.POLICIES_WRITE)]
KeyPath = Annotated[
    str,
    Path(
        alias="policy_key",
        max_length=40,
        pattern=NO_NUL_PATTERN,
        description="The policy key, e.g. `wealth`.",
        examples=["wealth"],
    ),
]
VersionPath = Annotated[ParamInteger(1, INT_MAX), Path(description="The version number.", examples=[1])]
ETAG_HEADER = {
    "ETag": {"description": "The version's ETag; send it as If-Match to edit a draft.", "schema": {"type": "string"}}
}


def _actor(request: Request) -> str:
    return request.state.principal.name


def _version_snapshot(version: TierPolicyVersion) -> dict:
    return {
        "version": version.version,
        "status": version.status,
        "tiers": version.tiers,
        "downgrade_grace_days": version.downgrade_grace_days,
        "description": version.description,
    }


async def _audit(
    session, request: Request, action: str, policy_key: str, before: dict | None, after: dict | None
) -> None:
    await audit_service.record(session, _actor(request), action, "policy", policy_key, before, after)


def _version_read(policy: TierPolicy, version: TierPolicyVersion, response: Response) -> TierPolicyVersionRead:
    response.headers["ETag"] = policies.etag_of(version)
    return TierPolicyVersionRead(
        policy_key=policy.key,
        version=version.version,
        status=version.status,
        tiers=[TierRead(**tier) for tier in version.tiers],
        downgrade_grace_days=version.downgrade_grace_days,
        description=version.description,
        created_by=version.created_by,
        created_at=version.created_at,
        updated_at=version.updated_at,
        activated_at=version.activated_at,
        retired_at=version.retired_at,
    )


@creates(
    router,
    "",
    summary="Create a tier policy",
    location="/v1/tier-policies/{policy_key}",
    response_model=TierPolicyVersionRead,
    dependencies=WRITE,
    responses={201: {"headers": ETAG_HEADER}, **problem_responses(401, 403, 409, 422)},
)
async def create_tier_policy(
    body: TierPolicyCreate, session: SessionDep, request: Request, response: Response
) -> TierPolicyVersionRead:
    """Create a policy with its first version, as draft version 1.

    Tiers are tried in order and the first match wins; each condition is checked against the attribute
    catalog, codes must be unique and no tier may follow an unconditional one (each error is a 422 pointing
    at the node, e.g. `/tiers/2/condition/all/1/attr`). Simulate the draft, then activate it. A key already
    taken is a 409.
    """
    policy, version = await policies.create_policy(session, body, _actor(request))
    await _audit(
        session,
        request,
        "policy.create",
        policy.key,
        None,
        {"name": policy.name, "description": policy.description, **_version_snapshot(version)},
    )
    return _version_read(policy, version, response)


@router.get(
    "",
    summary="List tier policies",
    response_model=Page[TierPolicySummary],
    dependencies=READ,
    responses=problem_responses(401, 403, 422),
)
async def list_tier_policies(session: SessionDep, page: PageParams) -> Page[TierPolicySummary]:
    """Every policy in creation order, with the number of its active version (null when none is active);
    follow `next_cursor`."""
    rows = await policies.list_policies(session, page)
    return Page[TierPolicySummary].of(
        rows,
        page,
        lambda row: TierPolicySummary(
            policy_key=row[0].key,
            name=row[0].name,
            description=row[0].description,
            active_version=row[1],
            latest_version=row[2],
            created_at=row[0].created_at,
        ),
        key_of=lambda row: (row[0].id,),
    )


@router.get(
    "/{policy_key}",
    summary="Get a tier policy with its versions",
    response_model=TierPolicyRead,
    dependencies=READ,
    responses=problem_responses(401, 403, 404),
)
async def get_tier_policy(key: KeyPath, session: SessionDep) -> TierPolicyRead:
    """A policy with a summary of every version (status, tier codes, who created it, when it was active)."""
    policy = await policies.get_policy(session, key)
    versions = await policies.list_versions(session, policy)
    active = next((v.version for v in versions if v.status == "active"), None)
    return TierPolicyRead(
        policy_key=policy.key,
        name=policy.name,
        description=policy.description,
        active_version=active,
        latest_version=max(v.version for v in versions),
        created_at=policy.created_at,
        versions=[
            TierPolicyVersionSummary(
                version=v.version,
                status=v.status,
                tier_codes=[t["code"] for t in v.tiers],
                downgrade_grace_days=v.downgrade_grace_days,
                description=v.description,
                created_by=v.created_by,
                created_at=v.created_at,
                activated_at=v.activated_at,
                retired_at=v.retired_at,
            )
            for v in versions
        ],
    )


@router.get(
    "/{policy_key}/changes",
    summary="List a policy's changes",
    response_model=Page[TierPolicyChangeRead],
    dependencies=READ,
    responses=problem_responses(401, 403, 404, 422),
)
async def list_tier_policy_changes(key: KeyPath, session: SessionDep, page: PageParams) -> Page[TierPolicyChangeRead]:
    """The policy's audit trail, oldest first: who created, edited, activated, retired or rolled back what;
    follow `next_cursor`."""
    policy = await policies.get_policy(session, key)
    changes = await policies.list_changes(session, policy, page)
    return Page[TierPolicyChangeRead].of(
        changes,
        page,
        lambda c: TierPolicyChangeRead(
            id=c.id, version=c.version, action=c.action, actor=c.actor, at=c.at, detail=c.detail
        ),
    )


@creates(
    router,
    "/{policy_key}/versions",
    summary="Add a draft version",
    location="/v1/tier-policies/{policy_key}/versions/{version}",
    response_model=TierPolicyVersionRead,
    dependencies=WRITE,
    responses={201: {"headers": ETAG_HEADER}, **problem_responses(401, 403, 404, 422)},
)
async def add_tier_policy_version(
    key: KeyPath, body: TierPolicyVersionCreate, session: SessionDep, request: Request, response: Response
) -> TierPolicyVersionRead:
    """Add a draft version after the latest one: give its tiers, or `copy_from` an existing version."""
    policy, version = await policies.add_version(session, key, body, _actor(request))
    await _audit(session, request, "policy.version_create", policy.key, None, _version_snapshot(version))
    return _version_read(policy, version, response)


@router.get(
    "/{policy_key}/versions/{version}",
    summary="Get a policy version",
    response_model=TierPolicyVersionRead,
    dependencies=READ,
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(401, 403, 404)},
)
async def get_tier_policy_version(
    key: KeyPath, version: VersionPath, session: SessionDep, response: Response, conditional: ConditionalGet
) -> TierPolicyVersionRead:
    """One version in full, with its ETag (send it as If-Match to edit a draft; as If-None-Match for a 304 while
    it is unchanged)."""
    policy = await policies.get_policy(session, key)
    found = await policies.get_version(session, policy, version)
    if matches_if_none_match(conditional.if_none_match, policies.etag_of(found)):
        return Response(status_code=304, headers={"ETag": policies.etag_of(found)})
    return _version_read(policy, found, response)


@router.put(
    "/{policy_key}/versions/{version}",
    summary="Edit a draft version",
    response_model=TierPolicyVersionRead,
    dependencies=WRITE,
    responses={200: {"headers": ETAG_HEADER}, **problem_responses(401, 403, 404, 409, 412, 422, 428)},
)
async def edit_tier_policy_version(
    key: KeyPath,
    version: VersionPath,
    body: TierPolicyVersionUpdate,
    session: SessionDep,
    request: Request,
    response: Response,
    if_match: Annotated[str | None, Header(description="The ETag from reading the version.")] = None,
) -> TierPolicyVersionRead:
    """Replace a draft's tiers, grace and description.

    Only drafts change (an active or retired version is a 409; add a version instead). Send If-Match with the
    ETag you read: without it 428, and 412 if someone changed the draft since.
    """
    before = _version_snapshot(await policies.get_version(session, await policies.get_policy(session, key), version))
    policy, found = await policies.edit_version(session, key, version, body, if_match, _actor(request))
    await _audit(session, request, "policy.update", policy.key, before, _version_snapshot(found))
    return _version_read(policy, found, response)


@router.post(
    "/{policy_key}/versions/{version}/activate",
    summary="Activate a version",
    response_model=TierPolicyVersionRead,
    dependencies=WRITE,
    responses=problem_responses(401, 403, 404, 409),
)
async def activate_tier_policy_version(
    key: KeyPath,
    version: VersionPath,
    session: SessionDep,
    request: Request,
    response: Response,
    background: BackgroundTasks,
) -> TierPolicyVersionRead:
    """Make this version the active one; the previously active version is retired in the same transaction.

    Activating a retired version older than the active one is a rollback (recorded as such in the audit).
    Activating the active version changes nothing. A concurrent activation that wins the race makes this a 409.
    Activation starts a tier run for the policy (see /v1/tier-runs) once it has committed.
    """
    previous = next(
        (
            v.version
            for v in await policies.list_versions(session, await policies.get_policy(session, key))
            if v.status == "active"
        ),
        None,
    )
    policy, found = await policies.activate_version(session, key, version, _actor(request))
    await _audit(
        session, request, "policy.activate", policy.key, {"active_version": previous}, {"active_version": found.version}
    )
    try:
        run = await runs.start_run(session, policy, _actor(request))
    except runs.TierRunAlreadyRunning:
        pass  # the running run re-reads nothing; the next run (cron or POST /v1/tier-runs) applies this version
    else:
        background.add_task(
            runs.execute_run,
            request.app.state.sessionmaker,
            run.id,
            runs.CHUNK_SIZE,
            request.app.state.settings.tier_run_workers,
        )
        response.headers["Location"] = f"/v1/tier-runs/{run.id}"
    return _version_read(policy, found, response)


@router.post(
    "/{policy_key}/versions/{version}/retire",
    summary="Retire a version",
    response_model=TierPolicyVersionRead,
    dependencies=WRITE,
    responses=problem_responses(401, 403, 404, 409),
)
async def retire_tier_policy_version(
    key: KeyPath, version: VersionPath, session: SessionDep, request: Request, response: Response
) -> TierPolicyVersionRead:
    """Retire the active version (the policy then has none active) or discard a draft."""
    before = (await policies.get_version(session, await policies.get_policy(session, key), version)).status
    policy, found = await policies.retire_version(session, key, version, _actor(request))
    await _audit(
        session,
        request,
        "policy.retire",
        policy.key,
        {"version": found.version, "status": before},
        {"version": found.version, "status": found.status},
    )
    return _version_read(policy, found, response)


@router.post(
    "/{policy_key}/versions/{version}/evaluate",
    summary="What-if: evaluate values",
    response_model=WhatIfResult,
    dependencies=READ,
    responses=problem_responses(401, 403, 404, 422),
)
async def evaluate_tier_policy_version(
    key: KeyPath, version: VersionPath, body: WhatIfRequest, session: SessionDep
) -> WhatIfResult:
    """What-if: the tier a customer with these attribute values would land in, and why.

    The explanation lists each tier in order up to the match, with every comparison's value, threshold and
    result. Attributes not given take the value a customer without data has (0 for sums and counts).
    """
    return await simulation.evaluate_what_if(session, key, version, body.attributes)


@router.post(
    "/{policy_key}/versions/{version}/simulate",
    summary="Simulate a version on every customer",
    response_model=SimulationResult,
    dependencies=READ,
    responses=problem_responses(401, 403, 404),
)
async def simulate_tier_policy_version(key: KeyPath, version: VersionPath, session: SessionDep) -> SimulationResult:
    """Evaluate this version against today's whole customer population, in one set-based SQL statement.

    Returns the tier distribution and, against the active version, the migration matrix and how many
    customers would move up, down or stay by tier rank. Writes nothing.
    """
    return await simulation.simulate_version(session, key, version)
