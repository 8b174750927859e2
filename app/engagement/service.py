"""What the engagement domain offers other domains: erasure of a customer's engagement data. The operations live
by programme: communities.py, activities.py (and metrics.py, results.py for the reports)."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Who took part in what, and when, is the customer's personal data: it goes with them. Counts in metrics and
# results fall accordingly (an erased customer was never a member).
_ERASE = text("""
WITH memberships AS (DELETE FROM community_membership WHERE customer_id = :customer_id),
     activity AS (DELETE FROM community_activity_event WHERE customer_id = :customer_id),
     referred AS (DELETE FROM referral WHERE referrer_id = :customer_id),
     referee AS (UPDATE referral SET referee_id = NULL, referral_code = NULL, updated_at = now()
                 WHERE referee_id = :customer_id)
DELETE FROM activity_participation WHERE customer_id = :customer_id
""")


async def erase_customer_engagement(session: AsyncSession, customer_id: int) -> None:
    """Delete the customer's memberships (with their moves), member activity, activity participations and
    referrals made; as a referee, the customer is cleared from the referrer's referral (which keeps its status)."""
    await session.execute(_ERASE, {"customer_id": customer_id})
