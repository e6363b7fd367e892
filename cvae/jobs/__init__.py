"""Batch synthetic-data jobs: `cvae generate` writes labeled datasets through the service."""
