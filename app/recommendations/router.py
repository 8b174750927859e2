"""HTTP routes: a customer's next-best products, and the contact policy that keeps offers from fatiguing."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.audit import service as audit_service
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.security import Scope, require_scope
from app.customers.schemas import ExternalId
from app.recommendations import contact, service
from app.recommendations.schemas import (Channel, ContactPolicy, FilteredProduct, ProductRef, Reason,
                                         RecommendationRead, RecommendationsRead, ScoreParts)

router = APIRouter(prefix="/v1/customers/{external_id}/recommendations", tags=["recommendations"],
                   responses=problem_responses(401, 403, 404, 422))
contact_router = APIRouter(prefix="/v1/contact-policy", tags=["recommendations"],
                           responses=problem_responses(401, 403))


@router.get("", response_model=RecommendationsRead, response_model_exclude_none=True,
            dependencies=[require_scope(Scope.RECOMMENDATIONS_READ)])
async def get_recommendations(
        external_id: Annotated[ExternalId, Path(description="The bank's own customer id.")],
        session: SessionDep, request: Request,
        limit: Annotated[int, Query(ge=1, le=10)] = 3,
        channel: Channel = "mobile",
        exclude: Annotated[list[str], Query(max_length=50, description="Products already shown elsewhere.")] = [],  # noqa: B006
        explain: Annotated[bool, Query(description="Also list the products filtered out, and why.")] = False,
        seed: Annotated[int | None, Query(ge=0, le=2**31, description="Makes exploration repeatable.")] = None,
        explore: Annotated[bool, Query(description="false: rank by posterior means, no sampling.")] = True,
) -> RecommendationsRead:
    """What to offer this customer now: products they may be offered (eligible, suitable for their risk
    tolerance, not held, consented, not suppressed by the contact policy), ranked by propensity x value x lever.
    Each item has a `recommendation_id` to report feedback on, and the reasons behind it. The served list is
    stored, so feedback is attributed to what was shown."""
    result = await service.recommend(session, request.app.state.settings, external_id, channel=channel, limit=limit,
                                     exclude=exclude, explain=explain, seed=seed, explore=explore)
    return RecommendationsRead(
        customer_id=external_id, tier=result.tier, strategy=result.strategy,
        items=[RecommendationRead(
            recommendation_id=rid, rank=rank,
            product=ProductRef(code=item.product.code, name=item.product.name, category=item.product.category,
                               risk_level=item.product.risk_level),
            score=round(item.score, 6), score_parts=ScoreParts(propensity=round(item.propensity, 6),
                                                               value=item.value, lever=item.lever),
            reasons=[Reason(**reason) for reason in item.reasons])
            for rank, (rid, item) in enumerate(zip(result.recommendation_ids, result.items, strict=True), 1)],
        filtered_out=[FilteredProduct(**f) for f in result.filtered] if explain else None)


@contact_router.get("", response_model=ContactPolicy, dependencies=[require_scope(Scope.PRODUCTS_READ)])
async def get_contact_policy(session: SessionDep) -> ContactPolicy:
    """The rules that suppress offers after ignored impressions or dismissals."""
    return ContactPolicy(rules=await contact.list_rules(session))


@contact_router.put("", response_model=ContactPolicy, dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
                    responses=problem_responses(422))
async def put_contact_policy(body: ContactPolicy, session: SessionDep, request: Request) -> ContactPolicy:
    """Replace the whole contact policy (audited)."""
    before = ContactPolicy(rules=await contact.list_rules(session))
    await contact.replace_rules(session, body.rules)
    after = ContactPolicy(rules=await contact.list_rules(session))
    await audit_service.record(session, request.state.principal.name, "contact_policy.update", "contact_policy",
                               "rules", before.model_dump(mode="json"), after.model_dump(mode="json"))
    return after
