"""Test fixtures: butler (placeholder until the area lands)."""
