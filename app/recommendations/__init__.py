"""Next-best-product recommendations: candidates filtered in SQL, ranked by propensity x value x lever.

recommender.py runs a request: the compiled catalog (catalog.py) gives the statements (queries.py) that read or
compute the customer's offer state (offer_state.py) and the candidates; ranking.py scores them and writes their
reasons from the statistics of ranking_stats.py; served.py stores what was shown. contact.py holds the contact
policy, evaluation.py the offline MAP@7."""
