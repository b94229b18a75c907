"""The platform's HTTP API on the daemon's own event loop (aiohttp beside grpc.aio).

``POST /v0/<Api>/<method>``: the request frame is read as it arrives and handed to the method's
handler; every API outcome is HTTP 200 with ``{"result"}`` or ``{"error"}``. Non-2xx only for a
body that is not a frame (400), an unknown method (404), another verb than POST (405) and a
JSON part over the cap (413); the body is read to its end before any answer, so a client that
sends everything before reading sees the answer, not a reset. ``GET /healthz`` answers 200
while serving. Other modules add their methods and routes with ``add_method``/``add_route``
before ``start``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from launcher.api.convert import unknown_error
from launcher.errors import RequestError
from launcher.http import dataset_api, launcher_api, model_api
from launcher.http.bridge import Refused
from launcher.http.call import Call, Handler, Reply, Services, refused
from launcher.http.frame import PIECE, FrameError, RequestFrame, encode_varint, response_head

log = logging.getLogger("launcher.http")

#: The largest JSON part accepted (413 beyond): requests' JSON is small, the data is in blobs.
MAX_JSON = 16 << 20
CONTENT_TYPE = "application/octet-stream"
PREFIX = "/v0/"
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpApi:
    """The platform API's methods and the listener's extra routes, then the running server."""

    def __init__(
        self,
        services: Services,
        serving: Callable[[], bool],
        idle_seconds: float | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        self.services = services
        self._serving = serving
        #: A request body that sends nothing for this long is ended with a 400.
        self._idle = idle_seconds
        #: Calls served at once (as gRPC's maximum_concurrent_rpcs): past it, too_many_requests.
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._methods: dict[tuple[str, str], Handler] = {}
        for api, table in (
            ("Model", model_api.METHODS),
            ("Dataset", dataset_api.METHODS),
            ("PersistentLauncher", launcher_api.METHODS),
        ):
            for name, handler in table.items():
                self.add_method(api, name, handler)
        self._routes: list[tuple[str, str, RouteHandler]] = [("GET", "/healthz", self._health)]
        self._runner: web.AppRunner | None = None

    def add_method(self, api: str, method: str, handler: Handler) -> None:
        """Serve ``POST /v0/<api>/<method>`` with ``handler`` (a frame in, a ``Reply`` out)."""
        self._methods[(api, method)] = handler

    def add_route(self, verb: str, path: str, handler: RouteHandler) -> None:
        """Serve a plain aiohttp route on the same listener (``GET /metrics``, say)."""
        if self._runner is not None:
            raise RuntimeError("routes are added before the HTTP server starts")
        self._routes.append((verb, path, handler))

    async def start(self, host: str, port: int) -> str:
        """Listen on ``host:port`` (0: any free port); returns ``host:port`` as bound."""
        app = web.Application(client_max_size=MAX_JSON)
        for verb, path, handler in self._routes:
            app.router.add_route(verb, path, handler)
        app.router.add_route("*", "/v0/{api}/{method}", self._dispatch)
        # A client that goes away must not cancel its job: handlers run to their end.
        # read_bufsize: a request body is buffered up to about two pieces before reading from
        # the socket pauses, so each piece is joined from few socket reads.
        self._runner = web.AppRunner(
            app, handler_cancellation=False, access_log=None, read_bufsize=PIECE
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=False)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[attr-defined]
        bound = sockets[0].getsockname()[1] if sockets else port
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{bound}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.StreamResponse:
        if self._serving():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not serving\n")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        frame = RequestFrame(request.content, request.content_length, self._idle)
        handler = self._methods.get((request.match_info["api"], request.match_info["method"]))
        if request.method != "POST":
            return await _refuse(frame, 405, "only POST is served here", {"Allow": "POST"})
        if handler is None:
            return await _refuse(frame, 404, f"no method {request.path[len(PREFIX) :]}")
        try:
            await frame.open(MAX_JSON)
        except FrameError as e:
            return await _refuse(frame, e.status, str(e))
        call = Call(frame, request.headers.get("Authorization"), self.services)
        if self._max_in_flight is not None and self._in_flight >= self._max_in_flight:
            reply = refused(RequestError("too_many_requests"))
        else:
            self._in_flight += 1
            try:
                reply = await _run(handler, call, request.path)
            except FrameError as e:
                return await _refuse(frame, e.status, str(e))
            finally:
                self._in_flight -= 1
        try:
            await frame.drain()
            await frame.check_end()
        except FrameError as e:
            await _cleanup(reply)
            return _status(e.status, str(e))
        if frame.failure is not None:
            # The body broke off or stalled while a servicer read it (and answered that in
            # its own words): it was not a frame.
            await _cleanup(reply)
            return _status(frame.failure.status, str(frame.failure))
        return await _write(request, reply)


async def _run(handler: Handler, call: Call, path: str) -> Reply:
    try:
        return await handler(call)
    except RequestError as e:
        return refused(e)
    except Refused as e:
        return refused(e.error)
    except FrameError:
        raise  # the body broke off or lied about its sizes: answered 400
    except Exception:
        return refused(unknown_error(f"HTTP {path}"))


async def _refuse(
    frame: RequestFrame, status: int, text: str, headers: dict[str, str] | None = None
) -> web.Response:
    """A non-2xx answer, after the rest of the body (unless the body itself stalled)."""
    try:
        await frame.drain()
    except FrameError:
        pass  # stalled: answered now, and the connection is closed with the body unread
    return _status(status, text, headers)


def _status(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text + "\n", headers=headers)


async def _cleanup(reply: Reply) -> None:
    for close in reply.cleanup:
        try:
            await close()
        except Exception:
            log.exception("closing a reply's stream failed")


async def _write(request: web.Request, reply: Reply) -> web.StreamResponse:
    head = response_head(reply.body)
    response = web.StreamResponse(status=200, headers={"Content-Type": CONTENT_TYPE})
    try:
        if reply.blobs is None:
            response.content_length = len(head)
            await response.prepare(request)
            await response.write(head)
        else:
            await response.prepare(request)
            await response.write(head)
            async for length, pieces in reply.blobs:
                await response.write(encode_varint(length))
                async for piece in pieces:
                    await response.write(piece)
        await response.write_eof()
    except (ConnectionError, asyncio.CancelledError):
        log.info("HTTP client of %s went away before its answer was written", request.path)
    finally:
        await _cleanup(reply)
    return response
