"""Test fixtures: slurm (placeholder until the area lands)."""
