"""Launchers: where a job's worker runs (persistent launchers with a budget, temporary ones)."""
