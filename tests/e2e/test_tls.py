"""Listener security over real sockets: TLS and mutual TLS with a CA made in the test
(``openssl`` command line), refusal of public addresses without TLS and keys, and Unix
sockets created owner-only."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from launcher.auth.keys import KeyStore
from launcher.client import LauncherClient, LauncherConnectionError
from launcher.store.db import Database
from tests.support.launcher_proc import PROJECT, LauncherProcess, running_launcher

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(folder: Path, name: str, extensions: str) -> None:
    """``name.pem``/``name.key``: an EC key and a certificate signed by ``ca``."""
    (folder / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
        cwd=folder,
    )  # fmt: skip


def _make_ca(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca", cwd=folder,
    )  # fmt: skip


@dataclass
class Pki:
    folder: Path
    other_ca: Path

    def __getitem__(self, name: str) -> str:
        return str(self.folder / name)


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    folder = Path(tempfile.mkdtemp(prefix="lt-pki-"))
    _make_ca(folder)
    _issue(folder, "server", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    _issue(folder, "client", "extendedKeyUsage=clientAuth")
    _make_ca(folder / "other")
    yield Pki(folder, folder / "other" / "ca.pem")
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lt-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tcp_address(proc: LauncherProcess) -> str:
    # The log is appended to across restarts on one root: the last start's address.
    found = re.findall(r"launcher listening on (127\.0\.0\.1:\d+|0\.0\.0\.0:\d+)", proc.log())
    assert found, proc.log()
    return str(found[-1])


def tls_args(pki: Pki, listen: str = "127.0.0.1:0") -> list[str]:
    return ["--listen", listen, "--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"]]


def test_a_client_trusting_the_ca_talks_tls_and_others_cannot(pki: Pki, root: Path) -> None:
    with running_launcher(root, tls_args(pki)) as proc:
        address = tcp_address(proc)
        with LauncherClient(address, tls=pki["ca.pem"]) as client:
            assert "result" in client.model.get_models()
        with LauncherClient(address) as plaintext, pytest.raises(LauncherConnectionError):
            plaintext.model.get_models()
        with LauncherClient(address, tls=pki.other_ca) as wrong_ca:
            with pytest.raises(LauncherConnectionError):
                wrong_ca.model.get_models()


def _health(address: str, credentials: grpc.ChannelCredentials) -> int:
    with grpc.secure_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


def test_mutual_tls_requires_a_client_certificate_from_the_ca(pki: Pki, root: Path) -> None:
    extra = [*tls_args(pki), "--tls-client-ca", pki["ca.pem"]]
    with running_launcher(root, extra) as proc:
        address = tcp_address(proc)
        ca = Path(pki["ca.pem"]).read_bytes()
        with_cert = grpc.ssl_channel_credentials(
            ca, Path(pki["client.key"]).read_bytes(), Path(pki["client.pem"]).read_bytes()
        )
        assert _health(address, with_cert) == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as info:
            _health(address, grpc.ssl_channel_credentials(ca))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        with LauncherClient(address, tls=pki["ca.pem"]) as client:
            with pytest.raises(LauncherConnectionError):
                client.model.get_models()
        with LauncherClient(
            address, tls=pki["ca.pem"], client_cert=pki["client.pem"], client_key=pki["client.key"]
        ) as client:
            assert "result" in client.model.get_models()
        cli = [
            sys.executable,
            "-m",
            "launcher.cli",
            "--address",
            address,
            "--tls-ca",
            pki["ca.pem"],
        ]
        mutual = ["--client-cert", pki["client.pem"], "--client-key", pki["client.key"]]
        ok = subprocess.run(
            [*cli, *mutual, "get-models"], cwd=PROJECT, capture_output=True, timeout=60
        )
        assert ok.returncode == 0, ok.stderr
        refused = subprocess.run([*cli, "get-models"], cwd=PROJECT, capture_output=True, timeout=60)
        assert refused.returncode == 3


def _serve_refused(root: Path, extra: list[str]) -> str:
    """Start ``launcher serve`` expecting a refusal; its stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "serve", "--root", str(root), *extra],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0, done.stdout
    return done.stderr


def _add_key(root: Path) -> None:
    db = Database(root / "launcher.db")
    KeyStore(db).create("ops")
    db.close()


def test_a_public_address_needs_tls_and_keys(pki: Pki, root: Path) -> None:
    public = "0.0.0.0:0"
    err = _serve_refused(root, ["--listen", public])
    assert f"refusing to listen on {public}" in err and "no TLS and no API keys" in err
    err = _serve_refused(root, tls_args(pki, public))
    assert "no API keys" in err and "no TLS" not in err
    _add_key(root)
    err = _serve_refused(root, ["--listen", public])
    assert "no TLS;" in err and "no API keys" not in err


def test_a_public_address_with_tls_and_keys_or_allow_public_serves(pki: Pki, root: Path) -> None:
    with running_launcher(root, ["--listen", "0.0.0.0:0", "--allow-public"]) as proc:
        assert tcp_address(proc).startswith("0.0.0.0:")
    _add_key(root)
    with running_launcher(root, tls_args(pki, "0.0.0.0:0")) as proc:
        port = tcp_address(proc).rsplit(":", 1)[1]
        with LauncherClient(f"localhost:{port}", tls=pki["ca.pem"]) as client:
            assert client.model.get_models() == {"error": {"code": "bad_credentials"}}


def test_the_unix_socket_is_owner_only(root: Path) -> None:
    with running_launcher(root) as proc:
        path = proc.address.removeprefix("unix://")
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
