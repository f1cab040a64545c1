"""runbook: safe, repeatable, recorded database-migration repairs."""

__version__ = "0.1.0"
