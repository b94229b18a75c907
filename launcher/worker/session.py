"""A connected worker: the host side of one protocol session.

One task reads frames for the session's whole life and dispatches them: results to
the waiting call, ``requestData`` to a writer task (so reading never waits on writing,
which would deadlock against a worker that is itself busy writing), state blobs
straight into the call's sink. Anything the protocol does not allow ends the session
with a ``ProtocolViolation``; the job turns that into its outcome.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from launcher.params import ParamSource
from launcher.worker.data import DataServer, send_elements
from launcher.worker.frames import (
    ConnectionEnded,
    DataEvent,
    FrameReader,
    Message,
    ProtocolViolation,
)
from launcher.worker.writebehind import WriteBehind
from runtime import protocol

log = logging.getLogger("launcher.worker")

MAX_KEY_NAME = 1024


class KeySink(Protocol):
    def write(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> object: ...


class StateSink(Protocol):
    def key_writer(self, key: str) -> KeySink: ...


@dataclass(frozen=True)
class CallResult:
    """A call's answer: ``error_details`` is None on success."""

    error_details: str | None


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


def _error_details(params: Any) -> str | None:
    """None for ``{}``; the details text for ``{"error": {...}}``."""
    if not isinstance(params, dict):
        raise ProtocolViolation("a result or event's params is not an object")
    error = params.get("error")
    if error is None:
        return None
    if not isinstance(error, dict):
        raise ProtocolViolation("'error' is not an object")
    details = error.get("details")
    return details if isinstance(details, str) else repr(error)[: protocol.MAX_EXCEPTION_DETAILS]


class WorkerSession:
    """Talks to one connected worker. Create with ``start``; ``ended`` resolves when it stops."""

    _ids = itertools.count(1)

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._frames = FrameReader(reader)
        self._writer = writer
        self._write_lock = asyncio.Lock()
        loop = asyncio.get_running_loop()
        self._initialized: asyncio.Future[CallResult] = loop.create_future()
        self._call: _ActiveCall | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: resolves to the exception that ended the session (ConnectionEnded or ProtocolViolation)
        self.ended: asyncio.Future[Exception] = loop.create_future()
        self._reader_task = asyncio.create_task(self._read_loop())

    # ---- commands ----

    async def _send(self, data: bytes) -> None:
        async with self._write_lock:
            self._writer.write(data)
            await self._writer.drain()

    async def initialize(self, main_py: Path) -> CallResult:
        """Send ``initialize`` and wait for ``modelSessionInitialized``."""
        await self._send(protocol.encode_command("initialize", {"path": str(main_py)}))
        return await self._until_ended(self._initialized)

    async def create_model_state(
        self,
        params: dict[str, ParamSource],
        other_models: list[OtherModelSources],
        sink: StateSink,
    ) -> CallResult:
        """Run ``callCreateModelState``, serving data and streaming keys into ``sink``."""
        call = _ActiveCall(f"c{next(self._ids)}", DataServer(), sink)
        handles = []
        for i, (name, source) in enumerate(params.items()):
            handles.append({"name": name, **call.data.add(f"p{i}", source)})
        others = []
        for m, other in enumerate(other_models):
            state = [
                {"name": key, **call.data.add(f"m{m}k{k}", source)}
                for k, (key, source) in enumerate(other.keys.items())
            ]
            others.append({"id": other.model_id, "mountPath": other.mount_path, "state": state})
        self._call = call
        command = {"id": call.call_id, "params": handles, "otherModels": others}
        await self._send(protocol.encode_command("callCreateModelState", command))
        try:
            return await self._until_ended(call.result)
        finally:
            self._call = None

    async def _until_ended(self, fut: asyncio.Future[CallResult]) -> CallResult:
        waiters: set[asyncio.Future[Any]] = {fut, self.ended}
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if fut in done:
            return fut.result()
        raise self.ended.result()

    def close(self) -> None:
        """Stop reading and close the socket (the worker sees EOF)."""
        self._reader_task.cancel()
        for task in self._tasks:
            task.cancel()
        self._writer.close()
        if not self.ended.done():
            self.ended.set_result(ConnectionEnded("the launcher closed the session"))

    # ---- the reader ----

    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self._frames.next_frame()
                if isinstance(frame, DataEvent):
                    self._on_data_event(frame.body)
                else:
                    await self._on_message(frame)
        except (ConnectionEnded, ProtocolViolation) as e:
            self._end(e)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a sink or file failure ends the session
            log.exception("worker session failed")
            self._end(e)

    def _end(self, reason: Exception) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)
        for task in self._tasks:
            task.cancel()

    def _spawn(self, work: Callable[[], Any]) -> None:
        async def run() -> None:
            try:
                await work()
            except (ConnectionError, OSError, ProtocolViolation) as e:
                self._end(e if isinstance(e, ProtocolViolation) else ConnectionEnded(str(e)))

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_data_event(self, body: dict[str, Any]) -> None:
        call = self._call
        event = body.get("event")
        if call is None:
            raise ProtocolViolation(f"data event {event!r} outside a call")
        if event == "requestData":
            request_id, param, start, count = call.data.check_request(body)

            async def answer() -> None:
                async with self._write_lock:
                    await send_elements(self._writer, request_id, param, start, count)

            self._spawn(answer)
        elif event == "shuffle":
            call.data.shuffle(body)
        else:
            raise ProtocolViolation(f"unknown data event {str(event)[:64]!r}")

    async def _on_message(self, frame: Message) -> None:
        body = frame.body
        if "event" in body:
            event = body["event"]
            if event == "provideStateData":
                await self._on_state_data(body.get("params"), frame.blob_count)
                return
            if frame.blob_count:
                raise ProtocolViolation(f"event {str(event)[:64]!r} carries blobs")
            await self._frames.end_message()
            if event == "modelSessionInitialized" and not self._initialized.done():
                self._initialized.set_result(CallResult(_error_details(body.get("params"))))
                return
            raise ProtocolViolation(f"unexpected event {str(event)[:64]!r}")
        if frame.blob_count:
            raise ProtocolViolation("a result carries blobs")
        await self._frames.end_message()
        call = self._call
        if call is None or body.get("id") != call.call_id or call.result.done():
            raise ProtocolViolation(f"a result for an unknown call id {str(body.get('id'))[:64]!r}")
        call.result.set_result(CallResult(_error_details(body.get("result"))))

    async def _on_state_data(self, params: Any, blob_count: int) -> None:
        call = self._call
        if call is None or not isinstance(params, dict) or params.get("commandId") != call.call_id:
            raise ProtocolViolation("provideStateData for no running call")
        names = params.get("names")
        if not isinstance(names, list) or len(names) != blob_count:
            raise ProtocolViolation("provideStateData: 'names' must list one key per blob")
        for name in names:
            if not isinstance(name, str) or not name or len(name) > MAX_KEY_NAME:
                raise ProtocolViolation("provideStateData: a key name must be a non-empty string")
            if name in call.keys_seen:
                raise ProtocolViolation(f"state key {name[:64]!r} provided twice")
            call.keys_seen.add(name)
            if len(call.keys_seen) > protocol.MAX_STATE_KEYS:
                raise ProtocolViolation(f"more than {protocol.MAX_STATE_KEYS} state keys")
            length = await self._frames.blob_length(protocol.MAX_STATE_KEY_BYTES)
            sink = call.sink.key_writer(name)
            write = WriteBehind(sink.write)
            try:
                await self._frames.read_blob(length, write)
            finally:
                await write.flush()
            await asyncio.to_thread(sink.finish)
        await self._frames.end_message()
