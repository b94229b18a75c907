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

from runtime import messages
from runtime._frames import ProtocolError, ProvideData, Refused, read_frame
from runtime._memory import FreedMemory
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
        # Before the reader thread exists: one malloc arena, freed memory kept between calls.
        self._memory = FreedMemory()

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
                if isinstance(frame, ProvideData):
                    frame.request.resolve(frame.blobs)
                else:
                    self._mailbox.post(self._on_command, frame)
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

    def _on_command(self, command: messages.Command | Refused) -> None:
        self._memory.busy()
        if isinstance(command, messages.Initialize):
            self._initialize(command)
        elif isinstance(command, messages.CallCreateModelState):
            self._start_call(command)
        elif isinstance(command, Refused) and command.method == messages.Initialize.METHOD:
            error = messages.ExceptionError(command.reason)
            self._conn.send(messages.ModelSessionInitialized(error).encode())
        elif command.id is not None:
            reason = (
                f"{command.method}: {command.reason}"
                if isinstance(command, Refused)
                else f"unknown method {messages.shown(command.method)}"
            )
            self._answer(command.id, messages.ExceptionError(reason))
        else:
            print(f"runtime: ignoring the command {command!r}"[:1000], file=sys.stderr)

    def _initialize(self, command: messages.Initialize) -> None:
        from runtime._loader import load_model

        error = None
        try:
            self._model = load_model(command.path)
            self._initialized = True
        except Exception as e:
            error = _exception_details(e, "code startup")
        _flush_output()
        self._conn.send(messages.ModelSessionInitialized(error).encode())

    def _start_call(self, command: messages.CallCreateModelState) -> None:
        loop = self._event_loop()
        task = loop.create_task(self._create_model_state(command))
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

    async def _create_model_state(self, command: messages.CallCreateModelState) -> None:
        from runtime._call import Call
        from runtime._loader import entry_point
        from runtime._options import BadCommand, build_options

        assert self._channel is not None
        call = Call(self._conn, self._channel, command.id)
        try:
            options = build_options(call, command)
        except BadCommand as e:
            self._answer(command.id, messages.ExceptionError(f"{command.METHOD}: {e}"))
            return
        error = None
        try:
            if not self._initialized:
                raise RuntimeError("callCreateModelState: no model was initialized")
            result = entry_point(self._model, "createModelState")(options)
            if hasattr(result, "__await__"):
                await result
        except Exception as e:
            error = _exception_details(e, "createModelState")
        finally:
            call.complete()
        self._answer(command.id, error)

    def _answer(self, command_id: str, error: messages.ExceptionError | None) -> None:
        _flush_output()  # the model's last words reach its job log before its answer
        self._conn.send(messages.CallResult(command_id, error).encode())
        if self._loop is not None:
            self._memory.idle(self._loop)


def _exception_details(error: BaseException, phase: str) -> messages.ExceptionError:
    """The model's traceback (runtime frames left out), cut at the protocol's limit."""
    from runtime._loader import format_model_traceback

    text = format_model_traceback(error)
    if len(text) > messages.MAX_EXCEPTION_DETAILS:
        print(f"runtime: exception in the model during {phase}:\n{text}", file=sys.stderr)
    return messages.ExceptionError(
        messages.cut(text, where="; the whole traceback is in the worker's stderr")
    )


def _die(message: str) -> None:
    """End the process at once: after a protocol error the stream cannot be trusted."""
    sys.stderr.write(f"runtime: protocol error: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_PROTOCOL_ERROR)


def _line_buffered_output() -> None:
    """The model's ``print`` reaches its job log line by line as it runs, not when a block
    buffer fills (a worker forked from the zygote inherits the zygote's buffered streams)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken by the model: nothing to keep
            pass


def run(sock: socket.socket) -> None:
    """Serve the host over ``sock`` (connected) until the host closes it."""
    _line_buffered_output()
    _Worker(sock).serve()
