"""Strategy plugin `affinity_tree` (in progress)."""
