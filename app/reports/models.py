"""Indexes the reports need on other domains' tables (declared here, created by the satisfaction migration):
each report is one aggregation over an indexed range."""

from sqlalchemy import Index

from app.feedback.models import FeedbackEvent
from app.tiering.models import TierTransition

# tier-migrations: the moves of one policy in a time range
TIER_TRANSITION_POLICY_AT = Index("ix_tier_transition_policy_at", TierTransition.policy_id, TierTransition.at)

# recommendation-funnel: events in a time range, read from the index alone (an index-only scan)
FEEDBACK_EVENT_FUNNEL = Index("ix_feedback_event_funnel", FeedbackEvent.occurred_at,
                              postgresql_include=["recommendation_id", "kind", "product_code", "tier_code",
                                                  "strategy"])
