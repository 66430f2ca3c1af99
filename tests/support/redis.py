"""Test fixtures: redis (placeholder until the area lands)."""
