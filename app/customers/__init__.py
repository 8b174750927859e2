"""Customers: profiles, holdings, activity events and the metrics derived from them. A write's side effects in
other domains (locks, offer states, tiers, erasure) run through flows.py; locks.py holds the span locks writers and
batch chunks share."""
