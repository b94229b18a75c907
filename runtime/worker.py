"""The worker's protocol loop: serves the host's commands over one connected socket.

Threads: a reader thread does blocking ``recv_into`` on the socket and parses frames; everything
else (the model's code, the event loop) runs on the calling thread, to which the reader hands
each frame through a :class:`_Mailbox`. Until the first ``callCreateModelState`` that is a plain
blocking queue, so asyncio is not even imported while the model starts; from then on it is the
event loop's ``call_soon_threadsafe``. Data keeps arriving while the model runs, because the
reader never waits for the model.

A frame that breaks the protocol ends the process (message on stderr, exit status 2); the end
of the stream ends :func:`run` normally.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Any

from runtime import protocol
from runtime._frames import Command, ProtocolError, read_frame
from runtime._transport import Connection, ConnectionClosed

if TYPE_CHECKING:
    import asyncio

    from runtime._call import DataChannel

#: Exit status of a worker whose host broke the protocol.
EXIT_PROTOCOL_ERROR = 2


class _Mailbox:
    """Hands callables from the reader thread to the main thread, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._loop is None:
                self._queue.put((fn, args))
            else:
                self._loop.call_soon_threadsafe(fn, *args)

    def take(self) -> tuple[Callable[..., None], tuple[Any, ...]]:
        return self._queue.get()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on deliver to ``loop``; whatever is queued goes first, in order."""
        with self._lock:
            while not self._queue.empty():
                fn, args = self._queue.get()
                loop.call_soon(fn, *args)
            self._loop = loop


class _Worker:
    def __init__(self, sock: socket.socket) -> None:
        self._conn = Connection(sock)
        self._mailbox = _Mailbox()
        self._model: Any = None
        self._initialized = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: DataChannel | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def serve(self) -> None:
        threading.Thread(target=self._read_loop, name="runtime-reader", daemon=True).start()
        while not self._closed and self._loop is None:
            fn, args = self._mailbox.take()
            fn(*args)
        if self._loop is not None and not self._closed:
            self._loop.run_forever()

    # -- reader thread -------------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while True:
                frame = read_frame(self._conn, self._claim)
                if isinstance(frame, Command):
                    self._mailbox.post(self._on_command, frame)
                else:
                    frame.request.resolve(frame.blobs)
        except ConnectionClosed as e:
            if e.mid_frame:
                _die("the host closed the socket in the middle of a frame")
            self._mailbox.post(self._on_closed)
        except ProtocolError as e:
            _die(str(e))
        except OSError as e:
            _die(f"reading from the host failed: {e}")

    def _claim(self, request_id: int) -> Any:
        return None if self._channel is None else self._channel.claim(request_id)

    # -- main thread ---------------------------------------------------------------------------

    def _on_closed(self) -> None:
        self._closed = True
        if self._loop is not None:
            self._loop.stop()

    def _on_command(self, command: Command) -> None:
        if command.method == "initialize":
            self._initialize(command.params)
        elif command.method == "callCreateModelState":
            self._start_call(command.params)
        elif "id" in command.params:
            self._answer(command.params["id"], _error(f"unknown method {command.method!r}"))
        else:
            print(f"runtime: ignoring unknown command {command.method!r}", file=sys.stderr)

    def _initialize(self, params: dict[str, Any]) -> None:
        from runtime._loader import load_model

        path = params.get("path")
        try:
            if not isinstance(path, str):
                raise ValueError('initialize: "path" is missing or not a string')
            self._model = load_model(path)
            self._initialized = True
            answer: dict[str, Any] = {}
        except Exception as e:
            answer = {"error": _exception_details(e, "code startup")}
        self._send({"event": "modelSessionInitialized", "params": answer})

    def _start_call(self, params: dict[str, Any]) -> None:
        loop = self._event_loop()
        task = loop.create_task(self._create_model_state(params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            import asyncio

            from runtime._call import DataChannel

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._channel = DataChannel(self._conn, self._mailbox.post)
            self._mailbox.attach(self._loop)
        return self._loop

    async def _create_model_state(self, params: dict[str, Any]) -> None:
        from runtime._call import Call
        from runtime._loader import entry_point
        from runtime._options import BadCommand, build_options

        command_id = params.get("id")
        if not isinstance(command_id, str):
            print("runtime: callCreateModelState without a string id", file=sys.stderr)
            return
        assert self._channel is not None
        call = Call(self._conn, self._channel, command_id)
        try:
            options = build_options(call, params)
        except BadCommand as e:
            self._answer(command_id, _error(f"callCreateModelState: {e}"))
            return
        try:
            if not self._initialized:
                raise RuntimeError("callCreateModelState: no model was initialized")
            result = entry_point(self._model, "createModelState")(options)
            if hasattr(result, "__await__"):
                await result
            answer: dict[str, Any] = {}
        except Exception as e:
            answer = {"error": _exception_details(e, "createModelState")}
        finally:
            call.complete()
        self._answer(command_id, answer)

    def _answer(self, command_id: Any, result: dict[str, Any]) -> None:
        self._send({"id": command_id, "result": result})

    def _send(self, message: dict[str, Any]) -> None:
        self._conn.send(protocol.encode_message(message))


def _error(details: str) -> dict[str, Any]:
    return {"error": {"code": "exception", "details": details}}


def _exception_details(error: BaseException, phase: str) -> dict[str, str]:
    """The model's traceback (runtime frames left out), cut at the protocol's limit."""
    from runtime._loader import format_model_traceback

    text = format_model_traceback(error)
    limit = protocol.MAX_EXCEPTION_DETAILS
    if len(text) > limit:
        print(f"runtime: exception in the model during {phase}:\n{text}", file=sys.stderr)
        text = (
            text[:limit] + f" (cut: {len(text) - limit} more characters; the whole "
            "traceback is in the worker's stderr)"
        )
    return {"code": "exception", "details": text}


def _die(message: str) -> None:
    """End the process at once: after a protocol error the stream cannot be trusted."""
    sys.stderr.write(f"runtime: protocol error: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_PROTOCOL_ERROR)


def run(sock: socket.socket) -> None:
    """Serve the host over ``sock`` (connected) until the host closes it."""
    _Worker(sock).serve()
