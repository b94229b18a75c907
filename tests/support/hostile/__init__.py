"""Hostile model programs for the sandbox tests, and the harness that runs them."""
