"""distilserve/cli."""
