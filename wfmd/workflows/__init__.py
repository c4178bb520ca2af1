"""What can be run: discovering workflows, the current catalog, checking parameters."""
