"""Strategy plugin `task_routing` (in progress)."""
