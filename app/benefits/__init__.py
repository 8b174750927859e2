"""Benefits (权益): what a tier gives the customer. The catalogue (models, schemas, service), attachments to the
tiers of a policy with an optional extra condition, a customer's benefits in force with the gap to the next tier
(customer.py, over the compiler's gap in app/rules/gap.py), uses counted against each period's limit (uses.py),
the take-up report (reports.py), and texts in the customer's language (texts.py)."""
