"""The hub's relay listener: nodes dial in, one control and one data connection per job.

Each job gets a single-use token ``<id>.<secret>``: looked up by id, the secret compared in
constant time, refused after its deadline, and each of its two channels admitted once.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from launcher.executors.ray import control

log = logging.getLogger("launcher.executors.ray")

#: StreamReader buffer of relayed connections (bounds memory per job).
STREAM_LIMIT = 4 << 20
#: How long a connection may take to send its handshake line.
HANDSHAKE_LIMIT = 5.0

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class RelayTls:
    """The relay's TLS: the server context, and the PEM nodes verify it with."""

    context: ssl.SSLContext
    trust_pem: str

    @classmethod
    def load(cls, cert: Path, key: Path, ca: Path | None = None) -> RelayTls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        return cls(context, (ca or cert).read_text())


@dataclass
class Ticket:
    """What a job waits on: its two connections, as they arrive."""

    id: str
    secret: str
    deadline: float
    channels: dict[str, asyncio.Future[Conn]] = field(default_factory=dict)

    @property
    def token(self) -> str:
        return f"{self.id}.{self.secret}"


class RelayListener:
    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self._tickets: dict[str, Ticket] = {}
        self._server: asyncio.AbstractServer | None = None
        self.refused = 0  # connections refused (bad, reused or late tokens), for tests and logs

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.port, limit=STREAM_LIMIT, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def issue(self, lifetime: float) -> Ticket:
        loop = asyncio.get_running_loop()
        ticket = Ticket(
            secrets.token_hex(8), secrets.token_urlsafe(32), time.monotonic() + lifetime
        )
        ticket.channels = {name: loop.create_future() for name in control.CHANNELS}
        self._tickets[ticket.id] = ticket
        return ticket

    def revoke(self, ticket: Ticket) -> None:
        self._tickets.pop(ticket.id, None)
        for fut in ticket.channels.values():
            if not fut.done():
                fut.cancel()

    def _admit(self, channel: str, token: str) -> Ticket | None:
        ident, _, secret = token.partition(".")
        ticket = self._tickets.get(ident)
        if ticket is None or not hmac.compare_digest(secret.encode(), ticket.secret.encode()):
            return None
        if time.monotonic() > ticket.deadline or ticket.channels[channel].done():
            return None
        return ticket

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HANDSHAKE_LIMIT):
                line = await reader.readuntil(b"\n")
            channel, token = control.parse_handshake(line)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            await self._refuse(writer, "no handshake")
            return
        except control.ControlError as e:
            await self._refuse(writer, str(e))
            return
        ticket = self._admit(channel, token)
        if ticket is None:
            await self._refuse(writer, "bad, used or expired token")
            return
        writer.write(b"OK\n")
        ticket.channels[channel].set_result((reader, writer))
        if all(f.done() for f in ticket.channels.values()):
            self._tickets.pop(ticket.id, None)  # single use: both channels are in

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str) -> None:
        self.refused += 1
        log.warning("relay: refused a connection from %s: %s", _peer(writer), reason)
        try:
            writer.write(f"NO {reason}\n".encode())
            await writer.drain()
        except OSError:
            pass
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for ticket in list(self._tickets.values()):
            self.revoke(ticket)


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "?"
