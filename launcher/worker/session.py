"""A connected worker: the host side of one protocol session.

One task reads frames for the session's whole life and dispatches them: results to the
waiting call, state blobs straight into the call's sink, ``requestData`` to one writer task
through a queue of at most ``MAX_OUTSTANDING_REQUESTS`` (when it is full the reader waits, so
the socket stops being read and the worker's sends block: a flood costs the host nothing).
Reading never waits on writing otherwise, which would deadlock against a worker that is itself
busy writing; a write that stays blocked past ``WRITE_DEADLINE`` ends the session, and so does
anything else the protocol does not allow, with a ``ProtocolViolation`` the job turns into its
outcome. Closing cancels two tasks, whatever was outstanding.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from launcher.params import ParamSource
from launcher.store.blobs import INLINE_MAX_BYTES
from launcher.worker.data import DataServer, Reply, drain, send_elements
from launcher.worker.frames import (
    ConnectionEnded,
    DataEvent,
    FrameReader,
    Message,
    ProtocolViolation,
)
from runtime import messages, protocol

log = logging.getLogger("launcher.worker")

#: ``requestData`` events read but not yet answered, per session.
MAX_OUTSTANDING_REQUESTS = 4
#: The reader lets other sessions run after this many frames.
YIELD_EVERY_FRAMES = 64
#: The longest rest after a batch of frames (a batch that waited for the socket took long).
MAX_REST_SECONDS = 0.005
#: Seconds a write to the worker may stay blocked before the session ends.
WRITE_DEADLINE = 30.0


class KeySink(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> object: ...


class StateSink(Protocol):
    def key_writer(self, key: str) -> KeySink: ...


@dataclass(frozen=True)
class CallResult:
    """A call's answer: ``error_details`` is None on success (cut to 10,000 characters)."""

    error_details: str | None

    @classmethod
    def of(cls, error: messages.ExceptionError | None) -> CallResult:
        return cls(None if error is None else error.details)


@dataclass
class OtherModelSources:
    model_id: str
    mount_path: str
    keys: dict[str, ParamSource]


@dataclass
class _ActiveCall:
    call_id: str
    data: DataServer
    sink: StateSink
    keys_seen: set[str] = field(default_factory=set)
    result: asyncio.Future[CallResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class WorkerSession:
    """Talks to one connected worker. ``ended`` resolves when it stops."""

    _ids = itertools.count(1)

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        write_deadline: float = WRITE_DEADLINE,
        max_outstanding: int = MAX_OUTSTANDING_REQUESTS,
    ) -> None:
        self._frames = FrameReader(reader)
        self._writer = writer
        self._write_deadline = write_deadline
        self._write_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self._initialized: asyncio.Future[CallResult] = loop.create_future()
        self._call: _ActiveCall | None = None
        self._replies: asyncio.Queue[Reply] = asyncio.Queue(max_outstanding)
        #: resolves to the exception that ended the session (ConnectionEnded or ProtocolViolation)
        self.ended: asyncio.Future[Exception] = loop.create_future()
        self._reader_task = asyncio.create_task(self._read_loop())
        self._writer_task = asyncio.create_task(self._answer_loop())

    # ---- commands ----

    async def _send(self, data: bytes) -> None:
        async with self._write_lock:
            self._writer.write(data)
            await drain(self._writer, self._write_deadline)

    async def _command(self, data: bytes) -> None:
        """Send a command. When no reply is being written and the socket takes all of it at
        once (a small command, the usual case), that is the whole of it: no task, no wait;
        otherwise what stays buffered is drained under the write deadline, until the
        session ends."""
        if not self._write_lock.locked() and not self.ended.done():
            self._writer.write(data)
            if not self._writer.transport.get_write_buffer_size():
                return
            data = b""  # written; only the drain is left
        await self._until_ended(self._send(data))

    async def initialize(self, main_py: Path) -> CallResult:
        """Send ``initialize`` and wait for ``modelSessionInitialized``."""
        await self._command(messages.Initialize(str(main_py)).encode())
        return await self._until_ended(self._initialized)

    async def create_model_state(
        self,
        params: dict[str, ParamSource],
        other_models: list[OtherModelSources],
        sink: StateSink,
    ) -> CallResult:
        """Run ``callCreateModelState``, serving data and streaming keys into ``sink``."""
        call = _ActiveCall(f"c{next(self._ids)}", DataServer(), sink)
        handles = tuple(
            call.data.add(name, f"p{i}", source) for i, (name, source) in enumerate(params.items())
        )
        others = tuple(
            messages.OtherModelHandle(
                other.model_id,
                other.mount_path,
                tuple(
                    call.data.add(key, f"m{m}k{k}", source)
                    for k, (key, source) in enumerate(other.keys.items())
                ),
            )
            for m, other in enumerate(other_models)
        )
        self._call = call
        command = messages.CallCreateModelState(call.call_id, handles, others)
        try:
            await self._command(command.encode())
            return await self._until_ended(call.result)
        finally:
            self._call = None

    async def _until_ended(self, work: Any) -> Any:
        """``work``'s result (a future of ours, or a coroutine), unless the session ends
        first: then the reason is raised."""
        if isinstance(work, asyncio.Future):  # a call's answer: one callback, no task
            if self.ended.done():
                raise self.ended.result()

            def end(ended: asyncio.Future[Exception]) -> None:
                if not work.done():
                    work.set_exception(ended.result())

            self.ended.add_done_callback(end)
            try:
                return await work
            finally:
                self.ended.remove_done_callback(end)
        fut = asyncio.ensure_future(work)
        waiters: set[asyncio.Future[Any]] = {fut, self.ended}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            fut.cancel()
            raise
        if fut in done:
            return fut.result()
        fut.cancel()
        raise self.ended.result()

    def close(self) -> None:
        """Stop reading and writing and close the socket (the worker sees EOF)."""
        self._reader_task.cancel()
        self._writer_task.cancel()
        self._drop_replies()
        self._writer.close()
        if not self.ended.done():
            self.ended.set_result(ConnectionEnded("the launcher closed the session"))

    # ---- the reader ----

    async def _read_loop(self) -> None:
        try:
            batch_started = time.monotonic()
            for count in itertools.count(1):
                if count % YIELD_EVERY_FRAMES == 0:
                    # Frames already buffered are read without waiting, so a flood of small
                    # frames would keep the loop (and, through the GIL, other calls' threads).
                    # The session rests as long as its last batch took (capped): it gets at
                    # most about half of the launcher, and the loop idles meanwhile.
                    used = time.monotonic() - batch_started
                    await asyncio.sleep(min(used, MAX_REST_SECONDS))
                    batch_started = time.monotonic()
                frame = await self._frames.next_frame()
                if isinstance(frame, DataEvent):
                    await self._on_data_event(frame.event)
                else:
                    await self._on_message(frame)
        except (ConnectionEnded, ProtocolViolation) as e:
            self._end(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a sink or file failure ends the session
            log.exception("worker session failed")
            self._end(e)

    def _end(self, reason: Exception) -> None:
        """The session is over: no more answers. The reader stops by itself at the socket's end
        (it may be inside a key's write, which must finish before the state is aborted)."""
        if not self.ended.done():
            self.ended.set_result(reason)
        self._writer_task.cancel()
        self._drop_replies()

    def _drop_replies(self) -> None:
        """The answers that will not be sent let go of their files."""
        while not self._replies.empty():
            self._replies.get_nowait().source.let_go()

    async def _answer_loop(self) -> None:
        """Answer the queued ``requestData`` events, one at a time, in order."""
        try:
            while True:
                reply = await self._replies.get()
                try:
                    async with self._write_lock:
                        await send_elements(self._writer, reply, self._write_deadline)
                finally:
                    reply.source.let_go()
        except ProtocolViolation as e:
            self._end(e)
        except (ConnectionError, OSError) as e:
            self._end(ConnectionEnded(str(e)))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a param file failure ends the session, it never hangs it
            log.exception("answering the worker failed")
            self._end(e)

    async def _on_data_event(self, event: messages.DataEvent) -> None:
        call = self._call
        if call is None:
            raise ProtocolViolation(f"data event {event.EVENT!r} outside a call")
        if isinstance(event, messages.RequestData):
            reply = call.data.check_request(event)
            if self.ended.done():
                return  # no more answers
            # Its file stays open until it is answered (or dropped), even if the job ends first.
            reply.source.hold()
            try:
                await self._replies.put(reply)  # waits while full
            except BaseException:
                reply.source.let_go()
                raise
            if self.ended.done():
                self._drop_replies()
            return
        served = call.data.check_shuffle(event)
        start = time.monotonic()
        await asyncio.to_thread(call.data.shuffle, served)
        await asyncio.sleep(time.monotonic() - start)  # the session pays for the time it took

    async def _on_message(self, frame: Message) -> None:
        message = frame.parse()
        if isinstance(message, messages.ProvideStateData):
            await self._on_state_data(message, frame.blob_count)
            return
        if frame.blob_count:
            raise ProtocolViolation(f"a {type(message).__name__} message carries blobs")
        await self._frames.end_message()
        if isinstance(message, messages.ModelSessionInitialized):
            if self._initialized.done():
                raise ProtocolViolation("modelSessionInitialized sent twice")
            self._initialized.set_result(CallResult.of(message.error))
            return
        call = self._call
        if call is None or message.id != call.call_id or call.result.done():
            raise ProtocolViolation(f"a result for an unknown call id {messages.shown(message.id)}")
        call.result.set_result(CallResult.of(message.error))

    async def _on_state_data(self, message: messages.ProvideStateData, blob_count: int) -> None:
        call = self._call
        if call is None or message.command_id != call.call_id:
            raise ProtocolViolation("provideStateData for no running call")
        if len(message.names) != blob_count:
            raise ProtocolViolation("provideStateData: 'names' must list one key per blob")
        for name in message.names:
            if name in call.keys_seen:
                raise ProtocolViolation(f"state key {messages.shown(name)} provided twice")
            call.keys_seen.add(name)
            if len(call.keys_seen) > protocol.MAX_STATE_KEYS:
                raise ProtocolViolation(f"more than {protocol.MAX_STATE_KEYS} state keys")
            length = await self._frames.blob_length(protocol.MAX_STATE_KEY_BYTES)
            sink = call.sink.key_writer(name)
            if length <= INLINE_MAX_BYTES:
                # A key this small is kept in memory for the state's row (no file, no fsync):
                # written and finished here, without two thread hops.
                pieces: list[bytes] = []
                await self._frames.read_blob(length, pieces.append)
                for piece in pieces:
                    sink.write(piece)
                sink.finish()
                continue
            await self._frames.stream_blob(length, sink.write, self._writer.transport)
            await asyncio.to_thread(sink.finish)
        await self._frames.end_message()
