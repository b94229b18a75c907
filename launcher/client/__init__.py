"""The Python client of the launcher: ``LauncherClient`` and the exception it raises.

Methods and results follow the platform's API (see CONTRACT.md, "Python client"): snake_case
keyword arguments, camelCase result dicts, every API-level outcome returned as a value. Only
transport failures raise, as ``LauncherConnectionError``.
"""

from __future__ import annotations

import os
from types import TracebackType

from launcher.client.call import Caller, LauncherConnectionError, TlsOption, open_channel
from launcher.client.dataset import DatasetApi
from launcher.client.model import ModelApi
from launcher.client.persistent_launcher import PersistentLauncherApi
from launcher.v1 import dataset_pb2_grpc, model_pb2_grpc, persistent_launcher_pb2_grpc

__all__ = ["LauncherClient", "LauncherConnectionError"]


class LauncherClient:
    """A connection to one launcher daemon.

    ``address``: ``unix:///abs/path.sock``, ``unix:relative.sock`` or ``host:port``.
    ``api_key``: sent as ``authorization: Bearer <key>`` on every call.
    ``tls``: None for plaintext, True for the system's roots, or a PEM root certificate path.
    ``timeout``: a deadline in seconds for every call (None: no deadline).
    ``client_cert``/``client_key``: PEM paths of a client certificate, for mutual TLS.
    """

    def __init__(
        self,
        address: str,
        api_key: str | None = None,
        tls: TlsOption = None,
        timeout: float | None = None,
        client_cert: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self._channel = open_channel(address, tls, client_cert, client_key)
        caller = Caller(api_key, timeout)
        self.model = ModelApi(model_pb2_grpc.ModelStub(self._channel), caller, self._channel)
        self.dataset = DatasetApi(
            dataset_pb2_grpc.DatasetStub(self._channel), caller, self._channel
        )
        self.persistent_launcher = PersistentLauncherApi(
            persistent_launcher_pb2_grpc.PersistentLauncherStub(self._channel), caller
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> LauncherClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
