"""HTTP routes: a customer's next-best products, and the contact policy that keeps offers from fatiguing."""

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.audit.writes import AuditedWrite
from app.core.db import SessionDep, driver_connection
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, ConditionalGet
from app.core.hotpath import Answer, HotRead, answered
from app.core.i18n import RequestLanguage, language_headers
from app.core.metrics import RECOMMENDATION_LISTS
from app.core.security import Scope, require_scope
from app.customers.schemas import EXTERNAL_ID_PATTERN, ExternalIdPath
from app.recommendations import contact, fallback, recommender
from app.recommendations.schemas import ContactPolicy, FallbackSettings, RecommendationQuery, RecommendationsRead

router = APIRouter(
    prefix="/v1/customers/{customer_id}/recommendations",
    tags=["recommendations"],
    responses=problem_responses(401, 403, 404, 422),
)
contact_router = APIRouter(prefix="/v1/contact-policy", tags=["recommendations"], responses=problem_responses(401, 403))
fallback_router = APIRouter(
    prefix="/v1/recommendation-fallback", tags=["recommendations"], responses=problem_responses(401, 403)
)


async def render_recommendations(
    connection, state, customer_id: str, query: RecommendationQuery, language: str | None = None
) -> bytes | Answer:
    """The RecommendationsRead document of the customer with this external id, its reasons in `language`; the served
    list stored in `connection`'s transaction, or (on the hot path's pool) grouped with others: then an `Answer`
    ready once it is committed."""
    result = await state.recommender.recommend(
        connection,
        customer_id,
        channel=query.channel,
        limit=query.limit,
        exclude=query.exclude,
        explain=query.explain,
        seed=query.seed,
        explore=query.explore,
        language=language,
    )
    document = recommender.recommendations_json(result, query.explain)
    if result.stored is not None:
        return Answer(document, _counted(result.stored, query.channel))
    RECOMMENDATION_LISTS.labels(query.channel).inc()
    return document


async def _counted(stored, channel: str) -> None:
    await stored
    RECOMMENDATION_LISTS.labels(channel).inc()


@router.get(
    "",
    summary="Get next-best products for a customer",
    response_model=RecommendationsRead,
    dependencies=[require_scope(Scope.RECOMMENDATIONS_READ)],
)
async def get_recommendations(
    external_id: ExternalIdPath,
    query: Annotated[RecommendationQuery, Query()],
    language: RequestLanguage,
    session: SessionDep,
    request: Request,
) -> Response:
    """What to offer this customer now: products they may be offered (eligible, suitable for their risk
    tolerance, not held, consented, not suppressed by the contact policy), ranked by propensity x value x lever.
    Each item has a `recommendation_id` to report feedback on, and the reasons behind it. The served list is
    stored, so feedback is attributed to what was shown. The reasons' words are in the customer's language
    (Accept-Language; Content-Language says which)."""
    document = await answered(
        await render_recommendations(await driver_connection(session), request.app.state, external_id, query, language)
    )
    return Response(document, media_type="application/json", headers=language_headers(language))


# Served in front of the router (app/core/hotpath.py): the app asks on every home screen.
HOT_READS = [
    HotRead(
        "/v1/customers/{customer_id}/recommendations",
        Scope.RECOMMENDATIONS_READ,
        {"customer_id": EXTERNAL_ID_PATTERN},
        render_recommendations,
        RecommendationQuery,
        language=True,
        # On the primary: it writes the served list, and the offer state it reads is an UNLOGGED table, which a
        # replica does not have (reading it there is an error).
        replica=False,
    )
]


@contact_router.get(
    "",
    summary="Get the contact policy",
    response_model=ContactPolicy,
    dependencies=[require_scope(Scope.PRODUCTS_READ)],
    responses=CONDITIONAL_GET_RESPONSES,
)
async def get_contact_policy(session: SessionDep, conditional: ConditionalGet) -> ContactPolicy:
    """The rules that suppress offers after ignored impressions or dismissals, with their ETag (If-None-Match:
    304 while unchanged; If-Match on PUT: replace them safely)."""
    return conditional.respond(ContactPolicy(rules=await contact.list_rules(session)))


@contact_router.put(
    "",
    summary="Replace the contact policy",
    response_model=ContactPolicy,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(422)},
)
async def put_contact_policy(body: ContactPolicy, session: SessionDep, write: AuditedWrite) -> ContactPolicy:
    """Replace the whole contact policy (audited). With If-Match, only if nobody changed it since you read it
    (412)."""
    await contact.lock_rules(session)
    before = ContactPolicy(rules=await contact.list_rules(session))

    async def replace() -> ContactPolicy:
        await contact.replace_rules(session, body.rules)
        return ContactPolicy(rules=await contact.list_rules(session))

    return await write.update("contact_policy.update", "contact_policy", "rules", before, replace)


def _fallback_settings(row) -> FallbackSettings:
    return FallbackSettings(enabled=row.enabled, code=row.code, texts=row.texts)


@fallback_router.get(
    "",
    summary="Get the recommendations' fallback",
    response_model=FallbackSettings,
    dependencies=[require_scope(Scope.PRODUCTS_READ)],
    responses=CONDITIONAL_GET_RESPONSES,
)
async def get_fallback(session: SessionDep, conditional: ConditionalGet) -> FallbackSettings:
    """The service message an empty list of recommendations carries when it is on (`fallback` in the response),
    with its ETag (If-Match on PUT: replace it safely)."""
    return conditional.respond(_fallback_settings(await fallback.get_fallback(session)))


@fallback_router.put(
    "",
    summary="Replace the recommendations' fallback",
    response_model=FallbackSettings,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(422)},
)
async def put_fallback(body: FallbackSettings, session: SessionDep, write: AuditedWrite) -> FallbackSettings:
    """Switch the fallback on or off and set its words by language (audited): when every product is filtered out
    for a customer, the response carries this message, marked `fallback`, instead of an empty list alone. With
    If-Match, only if nobody changed it since you read it (412)."""
    before = _fallback_settings(await fallback.get_fallback(session, lock=True))

    async def replace() -> FallbackSettings:
        await fallback.replace_fallback(session, enabled=body.enabled, code=body.code, texts=body.texts)
        return _fallback_settings(await fallback.get_fallback(session))

    return await write.update("recommendation_fallback.update", "recommendation_fallback", "fallback", before, replace)
