"""Next-best-product recommendations: candidates filtered in SQL, ranked by propensity x value x lever."""
