"""Test fixtures: rest (placeholder until the area lands)."""
