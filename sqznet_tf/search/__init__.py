"""Design-space search: the search space (pure Python) and keras-tuner tuners with budgets."""
