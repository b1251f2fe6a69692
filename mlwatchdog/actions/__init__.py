"""Actions: carrying decisions out on Kubernetes (or only logging them, in dry-run)."""
