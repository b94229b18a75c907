"""Host side of the worker protocol: framing, a connected session, serving data."""
