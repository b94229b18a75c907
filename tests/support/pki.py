"""A throwaway self-signed certificate (``openssl`` command line) for TLS tests."""

from __future__ import annotations

import subprocess
from pathlib import Path


def self_signed(folder: Path, name: str, san: str = "IP:127.0.0.1") -> tuple[Path, Path]:
    """(certificate, key) of a one-day EC certificate for ``san``."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName={san}",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key
