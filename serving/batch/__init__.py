"""serving/batch."""
