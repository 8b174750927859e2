"""Relationship managers: who serves which tiers with what capacity, the set-based assignment of customers to them
(balanced by capacity, stable, released when the customer leaves the served tiers), manual reassignment with its
history, the coverage report, and the contact log."""
