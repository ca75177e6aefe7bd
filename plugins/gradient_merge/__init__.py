"""Strategy plugin `gradient_merge` (in progress)."""
