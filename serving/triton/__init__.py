"""serving/triton."""
