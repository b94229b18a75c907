"""Model code as a content-addressed bundle: a deterministic tar of regular files, by digest.

Only regular files and folders travel (a symlink in an untrusted model folder could point
at anything on the hub). On a node a bundle is unpacked once into ``<cache>/<digest>``,
read-only, atomically (unpacked beside, then renamed).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

#: The largest model folder that travels to nodes.
MAX_BUNDLE = 1 << 30


class BundleError(ValueError):
    pass


def make_bundle(folder: Path) -> tuple[str, bytes]:
    """(sha256 hex digest, tar bytes) of ``folder``'s regular files."""
    buf = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames.sort()
            base = Path(dirpath)
            for name in sorted(filenames):
                path = base / name
                if path.is_symlink() or not path.is_file():
                    continue
                rel = path.relative_to(folder).as_posix()
                if rel.startswith("__pycache__/") or "/__pycache__/" in rel:
                    continue
                data = path.read_bytes()
                total += len(data)
                if total > MAX_BUNDLE:
                    raise BundleError(f"the model folder is over {MAX_BUNDLE >> 20} MiB")
                info = tarfile.TarInfo(rel)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return hashlib.sha256(raw).hexdigest(), raw


def cached(cache: Path, digest: str) -> Path | None:
    path = cache / digest
    return path if path.is_dir() else None


def unpack(cache: Path, digest: str, raw: bytes) -> Path:
    """The folder of bundle ``digest`` in ``cache`` (unpacked now if it is not there yet)."""
    if hashlib.sha256(raw).hexdigest() != digest:
        raise BundleError("the bundle does not match its digest")
    target = cache / digest
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=cache))
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        for dirpath, _, filenames in os.walk(tmp):
            for name in filenames:
                os.chmod(os.path.join(dirpath, name), 0o444)
            os.chmod(dirpath, 0o555)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            for dirpath, _, _ in os.walk(tmp):
                os.chmod(dirpath, 0o755)
            shutil.rmtree(tmp, ignore_errors=True)
    return target
