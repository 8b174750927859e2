"""Tier assignment: compile (a version as one set-based statement), refresh (on write), overrides, reads and
the routes (router)."""
