"""Strategy plugin `gumbel_policy` (in progress)."""
