"""serving/registry."""
