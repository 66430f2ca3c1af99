"""Test fixtures: kafka (placeholder until the area lands)."""
