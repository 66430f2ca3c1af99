"""Shared pytest configuration: fixture plugins, one module per area."""

pytest_plugins = [
    "support.jobs",
    "support.rest",
    "support.kafka",
    "support.redis",
    "support.butler",
    "support.slurm",
    "support.sal",
]
