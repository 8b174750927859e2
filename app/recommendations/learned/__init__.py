"""The learned ranker: propensities from gradient-boosted trees trained on the bank's own history (features in
SQL, training, the versioned model registry)."""
