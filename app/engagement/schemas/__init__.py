"""Engagement request and response bodies, by what they describe: common.py (keys, the audience, invitations,
satisfaction), communities.py, activities.py, referrals.py."""
