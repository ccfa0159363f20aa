"""serving/rollout."""
