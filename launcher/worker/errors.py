"""How a worker's stream can fail: shared by the frame reader and the direct blob reader."""

from __future__ import annotations


class ProtocolViolation(Exception):
    """The worker sent something the protocol does not allow."""


class ConnectionEnded(Exception):
    """The worker closed its socket (cleanly, at a frame boundary or not)."""
