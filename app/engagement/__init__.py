"""Engagement programmes: communities (membership, member activity, metrics) and activities (invitations, RSVPs
with a waiting list, attendance, results against a not-invited group). Audiences are conditions compiled by the one
compiler (app/rules/compile.py); invitations honour marketing consent and the contact policy
(app/engagement/audience.py)."""
