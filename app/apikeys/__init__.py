"""API keys: creation (shown once), listing, revocation; stored as peppered hashes."""
