"""The operator log's line per refused request (one INFO line each; counted in metrics).

A refusal is a request answered with an error code before any work: bad credentials, a rate
limit, a quota, an invalid createState request, an overloaded or draining launcher. The line
says which call, the code, why, and who asked (tenant and key name when keys are in use);
``--log-format json`` gives the same as fields (``event``: ``request_refused``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from launcher.auth import access

log = logging.getLogger("launcher.requests")

#: Called with each refusal's code (the metrics' counter, set by ``launcher.telemetry``).
on_refused: Callable[[str], None] | None = None


def refused(method: str, code: str, reason: str | None = None) -> None:
    caller = access.current()
    key = caller.key.name if caller.key is not None else None
    reason = (reason or "")[:300]
    log.info(
        "refused %s: %s%s tenant=%s key=%s",
        method,
        code,
        f" ({reason})" if reason else "",
        caller.tenant,
        key or "-",
        extra={
            "fields": {
                "event": "request_refused",
                "method": method,
                "code": code,
                "reason": reason or None,
                "tenant": caller.tenant,
                "key": key,
            }
        },
    )
    if on_refused is not None:
        on_refused(code)
