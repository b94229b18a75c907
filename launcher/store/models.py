"""The model registry: model folders under ``<root>/models/<modelId>/`` and their ``model.toml``.

Models are read per request (adding a folder needs no restart). A folder's configuration is
validated here, field by field, so that a bad ``model.toml`` becomes ``ModelConfigError`` with a
message naming the field, which the job reports as ``invalid_executable_file``.

Files are read through ``launcher.store.model_files`` (no symbolic links, regular files only,
bounded sizes, parsed once per change) on a small thread pool of the registry's own, each read
bounded in time, so a slow or hostile file system delays only the models that live on it.
A model folder must resolve inside ``models/``. A job of an unchanged model reuses the
configuration last read, without a read, while inotify reports no change (``model_watch``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import stat
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from launcher import rules
from launcher.errors import ModelNotFound
from launcher.store.model_files import (
    CodeVersions,
    FileCache,
    ModelReadError,
    check_regular_file,
)
from launcher.store.model_toml import ModelConfigError, ModelToml, ParamRule, parse_model_toml
from launcher.store.model_watch import FolderWatch

__all__ = [
    "Listed",
    "ModelConfig",
    "ModelConfigError",
    "ModelReadError",
    "ModelRegistry",
    "ParamRule",
    "valid_model_id",
]

log = logging.getLogger("launcher.models")

#: How long one model folder may take to read before the request gives up on it.
READ_TIMEOUT_SECONDS = 10.0
READ_THREADS = 4


@dataclass(frozen=True)
class ModelConfig:
    model_id: str
    path: Path
    main_py: Path
    runtime: str
    name: str
    max_code_startup: float
    max_create_state: float
    parameters: tuple[ParamRule, ...]
    code_version: str  # "" when loaded without it (listing models needs none)
    created_at: float
    fresh_process: bool = False


#: What listing reads of one model folder: its configuration, or why it cannot be read.
Listed = ModelConfig | ModelConfigError | ModelReadError | ModelNotFound
T = TypeVar("T")


def valid_model_id(model_id: str) -> bool:
    """``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``: one path component, never ``.``/``..``."""
    return rules.MODEL_ID.ok(model_id)


def _parse_toml(raw: bytes) -> ModelToml:
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ModelConfigError(f"model.toml is not UTF-8: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ModelConfigError(f"model.toml is not valid TOML: {e}") from None
    return parse_model_toml(doc)


class ModelRegistry:
    """The model folders of one data root."""

    def __init__(self, models_dir: Path, read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        self.models_dir = Path(models_dir)
        self.read_timeout = read_timeout
        self._files = FileCache()
        self._versions = CodeVersions()
        self._pool = concurrent.futures.ThreadPoolExecutor(READ_THREADS, "model-read")
        self._watch = FolderWatch(self.models_dir)
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._resolved: tuple[tuple[int, int], Path] | None = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._watch.close()

    def exists(self, model_id: str) -> bool:
        return valid_model_id(model_id) and (self.models_dir / model_id).is_dir()

    def list_ids(self) -> list[str]:
        try:
            names = os.listdir(self.models_dir)
        except FileNotFoundError:
            return []
        ids = []
        for name in names:
            if self.exists(name):
                ids.append(name)
            elif not name.startswith(".") and name not in self._warned:
                self._warn_unserved(name)
        return sorted(ids)

    def _warn_unserved(self, name: str) -> None:
        with self._lock:
            if name in self._warned or len(self._warned) > 10_000:
                return
            self._warned.add(name)
        if (self.models_dir / name).is_dir():
            log.warning(
                "models/%r is not served: a model id is %s", name, rules.MODEL_ID.description
            )

    def folder(self, model_id: str) -> Path:
        """The model's folder, resolved: ``ModelNotFound`` when there is none, ``ModelConfigError``
        when it resolves outside ``models/``, ``ModelReadError`` on an I/O error."""
        if not valid_model_id(model_id):
            raise ModelNotFound(model_id)
        try:
            st = os.lstat(self.models_dir / model_id)
        except FileNotFoundError:
            raise ModelNotFound(model_id) from None
        except OSError as e:
            raise ModelReadError(f"model {model_id!r}: cannot open its folder: {e}") from e
        if stat.S_ISDIR(st.st_mode):
            # A real folder (not a link) directly in models/ is inside it: only models/ itself
            # needs resolving, and that is kept while models/ is the same directory.
            return self._base() / model_id
        if not stat.S_ISLNK(st.st_mode):
            raise ModelNotFound(model_id)
        try:
            base = self.models_dir.resolve(strict=True)
            folder = (self.models_dir / model_id).resolve(strict=True)
        except FileNotFoundError:
            raise ModelNotFound(model_id) from None
        except OSError as e:
            raise ModelReadError(f"model {model_id!r}: cannot open its folder: {e}") from e
        if not folder.is_dir():
            raise ModelNotFound(model_id)
        if folder.parent != base:
            raise ModelConfigError(
                f"the folder of model {model_id!r} resolves outside models/; "
                "a model folder must be a folder inside models/"
            )
        return folder

    def _base(self) -> Path:
        """``models/`` resolved; resolved again when it is another directory than last time."""
        try:
            st = os.stat(self.models_dir)
        except OSError as e:
            raise ModelReadError(f"cannot open the models folder: {e}") from e
        stamp = (st.st_dev, st.st_ino)
        cached = self._resolved
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            base = self.models_dir.resolve(strict=True)
        except OSError as e:
            raise ModelReadError(f"cannot open the models folder: {e}") from e
        self._resolved = (stamp, base)
        return base

    def load(self, model_id: str, code_version: bool = True) -> ModelConfig:
        """The model's configuration: ``ModelNotFound`` (no such folder), ``ModelConfigError``,
        ``ModelReadError`` (also when reading takes longer than ``read_timeout``).
        ``code_version=False`` skips hashing the folder (for listing models)."""
        if not self.exists(model_id):
            raise ModelNotFound(model_id)
        try:
            future = self._pool.submit(self._load, model_id, code_version)
        except RuntimeError:  # shut down
            raise ModelReadError("the launcher is stopping") from None
        try:
            return future.result(timeout=self.read_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ModelReadError(
                f"reading the folder of model {model_id!r} took longer than {self.read_timeout:g} s"
            ) from None

    async def aload(self, model_id: str) -> ModelConfig:
        """``load`` from the event loop: the configuration kept from the last read while
        inotify reports no change to the folder (``model_watch``), else read in the folder
        readers' threads, one hand-over from the loop (no thread in between), with the same
        errors and the same time limit. Nothing of the folder is looked at on the loop (a slow
        file system holds a reader, never the loop)."""
        watch = self._watch
        kept = watch.lookup(model_id)
        if kept is not None:
            return kept  # type: ignore[no-any-return]
        epoch, since = watch.epoch, time.monotonic()
        config, watched = await self._in_readers(
            lambda: self._load_watched(model_id), f"reading the folder of model {model_id!r}"
        )
        if watched:
            watch.store(model_id, config, epoch, since)
        return config

    def _load_watched(self, model_id: str) -> tuple[ModelConfig, bool]:
        """``_load`` with the folder watched first (so a change while reading is seen)."""
        watched = self._watch.active and self._watch.watch_model(model_id, self.folder(model_id))
        return self._load(model_id, True), watched

    async def alist_ids(self) -> list[str]:
        """``list_ids`` from the event loop: the ids last listed while inotify reports no
        change in ``models/``, else listed in the folder readers' threads (one hand-over)."""
        watch = self._watch
        kept = watch.lookup_ids()
        if kept is not None:
            return kept
        epoch, since = watch.epoch, time.monotonic()
        ids = await self._in_readers(self.list_ids, "listing the models folder")
        watch.store_ids(ids, epoch, since)
        return ids

    async def aload_many(self, model_ids: list[str]) -> dict[str, Listed]:
        """Each model's configuration without its code version (for listing), from the event
        loop: a config or the error that ``load`` would raise. Kept from the last read (the
        refusal of a bad ``model.toml`` too) while inotify reports the folder unchanged; the
        others read in one task of the folder readers' threads (one hand-over for the whole
        list), watched first. A folder still unread after ``read_timeout`` (all of them
        together) is a ``ModelReadError``."""
        watch = self._watch
        found: dict[str, Listed] = watch.lookup_many(model_ids)
        missing = [model_id for model_id in model_ids if model_id not in found]
        if not missing:
            return found
        epoch, since = watch.epoch, time.monotonic()
        stop = threading.Event()
        read: dict[str, tuple[Listed, bool]] = {}

        def read_all() -> None:
            for model_id in missing:
                if stop.is_set():
                    return
                watched = False
                try:
                    if not self.exists(model_id):
                        raise ModelNotFound(model_id)
                    folder = self.folder(model_id)
                    watched = self._watch.active and self._watch.watch_model(model_id, folder)
                    read[model_id] = (self._load(model_id, False), watched)
                except ModelConfigError as e:
                    read[model_id] = (e, watched)
                except (ModelReadError, ModelNotFound) as e:
                    read[model_id] = (e, False)  # not kept: it may be passing

        late: Listed | None = None
        try:
            await self._in_readers(read_all, "reading the model folders")
        except ModelReadError as e:  # too slow (or stopping): the folders not read yet say so
            stop.set()
            late = e
        for model_id in missing:
            config, watched = read.get(model_id) or (late or ModelReadError("not read"), False)
            found[model_id] = config
            if watched:
                watch.store(model_id, config, epoch, since, versioned=False)
        return found

    async def _in_readers(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` in the folder readers' threads, bounded by ``read_timeout``."""
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, fn)
        except RuntimeError:  # shut down
            raise ModelReadError("the launcher is stopping") from None
        try:
            return await asyncio.wait_for(future, self.read_timeout)
        except TimeoutError:
            raise ModelReadError(f"{what} took longer than {self.read_timeout:g} s") from None

    def _load(self, model_id: str, with_version: bool) -> ModelConfig:
        folder = self.folder(model_id)
        try:
            folder_stat = folder.stat()
        except OSError as e:
            raise ModelReadError(f"model {model_id!r}: cannot open its folder: {e}") from e
        main_py = folder / "main.py"
        check_regular_file(main_py, "main.py", rules.MAX_MAIN_PY_BYTES)
        try:
            config = self._files.read(
                folder / "model.toml", "model.toml", rules.MAX_MODEL_TOML_BYTES, _parse_toml
            )
        except FileNotFoundError:
            config = ModelToml()
        return ModelConfig(
            model_id=model_id,
            path=folder,
            main_py=main_py,
            runtime=config.runtime,
            fresh_process=config.fresh_process,
            name=config.name if config.name is not None else model_id,
            max_code_startup=config.max_code_startup,
            max_create_state=config.max_create_state,
            parameters=config.parameters,
            code_version=self._versions.version(folder) if with_version else "",
            created_at=min(folder_stat.st_mtime, folder_stat.st_ctime),
        )


def code_version(folder: Path) -> str:
    """A hash of every file's (relative path, size, mtime_ns): changes when any file does."""
    return CodeVersions().version(folder)
