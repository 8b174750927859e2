"""Tier policies stored as data: versioned, validated, simulated and activated one version at a time."""
