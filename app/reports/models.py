"""Indexes the reports need on other domains' tables (declared here, created by the satisfaction migration and
the ones after it): each report is one aggregation over an indexed range."""

from sqlalchemy import Index

from app.feedback.models import FeedbackEvent
from app.tiering.models import TierTransition

# tier-migrations: the moves of one policy in a time range. Transitions are appended in time order, so a BRIN
# index (a few pages, next to nothing to maintain) finds a range's blocks; a B-tree on (policy, at) slowed every
# transition's insert (bench/HISTORY.md), and a policy's first run writes one per customer.
TIER_TRANSITION_AT = Index("ix_tier_transition_at", TierTransition.at, postgresql_using="brin")

# recommendation-funnel: events in a time range, read from the index alone (an index-only scan)
FEEDBACK_EVENT_FUNNEL = Index(
    "ix_feedback_event_funnel",
    FeedbackEvent.occurred_at,
    postgresql_include=["recommendation_id", "kind", "product_code", "tier_code", "strategy"],
)
