"""Tierwise: customer tiering and next-best-product service."""
