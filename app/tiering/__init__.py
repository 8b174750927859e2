"""Tiering: policies stored as data (policies.py, policies_router.py; what-if and simulation in simulation.py), the
tiers customers get under them (assignment/: compile, refresh, overrides, reads, router) and batch runs over
everyone (runs.py, runs_router.py)."""
