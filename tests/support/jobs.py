"""Test fixtures: jobs (placeholder until the area lands)."""
