"""Model registry: folders picked up per request, model.toml validated field by field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from launcher.errors import ModelNotFound
from launcher.store.models import (
    ModelConfig,
    ModelConfigError,
    ModelReadError,
    ModelRegistry,
    ParamRule,
    valid_model_id,
)


def _model(models: Path, model_id: str, toml: str | None = None) -> Path:
    folder = models / model_id
    folder.mkdir(parents=True)
    (folder / "main.py").write_text("model = {}\n")
    if toml is not None:
        (folder / "model.toml").write_text(toml)
    return folder


def test_model_without_toml_gets_defaults(models: Path) -> None:
    folder = _model(models, "plain")
    config = ModelRegistry(models).load("plain")
    assert config.model_id == "plain"
    assert config.name == "plain"
    assert config.path == folder.resolve()
    assert config.main_py == folder.resolve() / "main.py"
    assert (config.runtime, config.max_code_startup, config.max_create_state) == (
        "python",
        120.0,
        3600.0,
    )
    assert config.parameters == ()
    assert config.created_at > 0


def test_full_model_toml_is_parsed(models: Path) -> None:
    _model(
        models,
        "full",
        """
runtime = "decthings-model"
name = "Full model"
[max_durations_seconds]
code_startup = 5
create_state = 0.5
[[parameters.create_state]]
name = "x"
required = true
shape = [-1, 3]
allowed_types = ["f32", "f64"]
[[parameters.create_state]]
name = "y"
""",
    )
    config = ModelRegistry(models).load("full")
    assert config.runtime == "decthings-model"
    assert config.name == "Full model"
    assert (config.max_code_startup, config.max_create_state) == (5.0, 0.5)
    assert config.parameters == (
        ParamRule("x", True, (-1, 3), ("f32", "f64")),
        ParamRule("y", True, None, None),
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("runtime = [", "not valid TOML"),
        ("colour = 1", "unknown field colour"),
        ('runtime = "node"', "runtime must be one of"),
        ("runtime = 3", "runtime must be one of"),
        ('name = ""', "name must be a non-empty string"),
        ("name = 5", "name must be a non-empty string"),
        ("max_durations_seconds = 5", "max_durations_seconds must be a table"),
        ("[max_durations_seconds]\nwarmup = 1", "unknown field max_durations_seconds.warmup"),
        ("[max_durations_seconds]\ncode_startup = 0", "code_startup must be positive"),
        ("[max_durations_seconds]\ncreate_state = -1.5", "create_state must be positive"),
        ("[max_durations_seconds]\ncreate_state = inf", "create_state must be positive"),
        ("[max_durations_seconds]\ncreate_state = nan", "create_state must be positive"),
        ('[max_durations_seconds]\ncode_startup = "10"', "code_startup must be a number"),
        ("[max_durations_seconds]\ncode_startup = true", "code_startup must be a number"),
        ("parameters = 1", "parameters must be a table"),
        ("[parameters]\nevaluate = []", "unknown field parameters.evaluate"),
        ("[parameters]\ncreate_state = 1", "create_state must be an array of tables"),
        ("[parameters]\ncreate_state = [1]", r"create_state\[0\] must be a table"),
        ("[[parameters.create_state]]\nrequired = true", r"create_state\[0\].name is missing"),
        ('[[parameters.create_state]]\nname = ""', r"\[0\].name must be a non-empty string"),
        ('[[parameters.create_state]]\nname = "x"\nkind = 1', r"unknown field .*\[0\].kind"),
        ('[[parameters.create_state]]\nname = "x"\nrequired = 1', r"\[0\].required must be true"),
        ('[[parameters.create_state]]\nname = "x"\nshape = 3', r"\[0\].shape must be an array"),
        ('[[parameters.create_state]]\nname = "x"\nshape = [-2]', r"integers >= -1 \(got -2\)"),
        ('[[parameters.create_state]]\nname = "x"\nshape = [1.5]', "integers >= -1"),
        ('[[parameters.create_state]]\nname = "x"\nshape = [true]', "integers >= -1"),
        ('[[parameters.create_state]]\nname = "x"\nallowed_types = []', "non-empty array"),
        (
            '[[parameters.create_state]]\nname = "x"\nallowed_types = ["float32"]',
            r"\[0\].allowed_types: 'float32' is not a tensor type",
        ),
        (
            '[[parameters.create_state]]\nname = "x"\n[[parameters.create_state]]\nname = "x"',
            r"\[1\].name 'x' is defined twice",
        ),
    ],
)
def test_malformed_model_toml_is_refused_naming_the_field(
    models: Path, toml: str, message: str
) -> None:
    _model(models, "bad", toml)
    with pytest.raises(ModelConfigError, match=message):
        ModelRegistry(models).load("bad")


def test_model_toml_that_is_not_utf8_is_refused(models: Path) -> None:
    folder = _model(models, "bad")
    (folder / "model.toml").write_bytes(b'name = "\xff"')
    with pytest.raises(ModelConfigError, match="not UTF-8"):
        ModelRegistry(models).load("bad")


def test_model_toml_that_is_a_folder_is_refused(models: Path) -> None:
    folder = _model(models, "bad")
    (folder / "model.toml").mkdir()
    with pytest.raises(ModelConfigError, match="model.toml is not a regular file"):
        ModelRegistry(models).load("bad")


def test_missing_main_py_is_a_config_error(models: Path) -> None:
    (models / "empty").mkdir()
    with pytest.raises(ModelConfigError, match="main.py is missing"):
        ModelRegistry(models).load("empty")


def test_main_py_that_is_a_folder_is_a_config_error(models: Path) -> None:
    (models / "odd" / "main.py").mkdir(parents=True)
    with pytest.raises(ModelConfigError, match="main.py is not a regular file"):
        ModelRegistry(models).load("odd")


def test_unreadable_model_toml_is_a_read_error(models: Path) -> None:
    # A symlink loop fails to open with ELOOP, an I/O error even for root.
    folder = _model(models, "loop")
    os.symlink("model.toml", folder / "model.toml")
    with pytest.raises(ModelReadError, match="cannot read model.toml"):
        ModelRegistry(models).load("loop")


@pytest.mark.parametrize(
    "model_id", ["", "../x", "a/b", "..", ".", ".hidden", "-x", "x" * 129, "a b", "a\0b", "é"]
)
def test_bad_model_ids_are_refused(models: Path, model_id: str) -> None:
    assert not valid_model_id(model_id)
    registry = ModelRegistry(models)
    assert not registry.exists(model_id)
    with pytest.raises(ModelNotFound):
        registry.load(model_id)


@pytest.mark.parametrize("model_id", ["a", "linear", "my_model-2.1", "X" * 128])
def test_good_model_ids_are_accepted(model_id: str) -> None:
    assert valid_model_id(model_id)


def test_model_id_that_escapes_models_dir_is_not_found(tmp_path: Path, models: Path) -> None:
    _model(tmp_path, "outside")
    assert not ModelRegistry(models).exists("../outside")
    with pytest.raises(ModelNotFound):
        ModelRegistry(models).load("../outside")


def test_unknown_model_is_key_error(models: Path) -> None:
    with pytest.raises(ModelNotFound):
        ModelRegistry(models).load("nothing")


def test_model_folder_resolving_outside_models_is_a_config_error(
    tmp_path: Path, models: Path
) -> None:
    # CONTRACT "Model folders": a folder that resolves outside models/ is
    # invalid_executable_file, never bound into a sandbox.
    real = _model(tmp_path / "elsewhere", "real")
    os.symlink(real, models / "linked")
    with pytest.raises(ModelConfigError, match="resolves outside models/"):
        ModelRegistry(models).load("linked")


def test_symlinked_model_folder_inside_models_is_resolved(models: Path) -> None:
    real = _model(models, "real")
    os.symlink("real", models / "linked")
    config = ModelRegistry(models).load("linked")
    assert config.model_id == "linked"
    assert config.path == real.resolve()


def test_models_are_picked_up_per_request(models: Path) -> None:
    registry = ModelRegistry(models)
    assert registry.list_ids() == []
    _model(models, "b")
    _model(models, "a")
    (models / "not a model").mkdir()
    (models / "stray-file").write_text("")
    assert registry.list_ids() == ["a", "b"]
    assert registry.exists("a")
    assert ModelRegistry(models / "missing").list_ids() == []


def test_code_version_changes_when_any_file_changes(models: Path) -> None:
    folder = _model(models, "m")
    (folder / "lib").mkdir()
    (folder / "lib" / "util.py").write_text("x = 1\n")
    registry = ModelRegistry(models)
    first = registry.load("m").code_version
    assert registry.load("m").code_version == first

    (folder / "lib" / "util.py").write_text("x = 22\n")
    second = registry.load("m").code_version
    assert second != first

    stat = (folder / "main.py").stat()
    os.utime(folder / "main.py", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    third = registry.load("m").code_version
    assert third != second

    (folder / "data.bin").write_bytes(b"")
    assert registry.load("m").code_version != third


def test_code_version_ignores_bytecode_caches(models: Path) -> None:
    folder = _model(models, "m")
    registry = ModelRegistry(models)
    before = registry.load("m").code_version
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    assert registry.load("m").code_version == before


def test_aload_reads_in_the_folder_readers_with_the_same_answers_and_time_limit(
    models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aload`` (from the event loop) answers as ``load``: the config, ModelNotFound,
    ModelConfigError, and a ModelReadError once the read takes longer than the limit."""
    import asyncio
    import threading
    import time

    _model(models, "good")
    _model(models, "bad", "runtime = 7\n")
    registry = ModelRegistry(models, read_timeout=0.3)
    threads: list[str] = []
    real = registry._load

    def watched(model_id: str, with_version: bool) -> ModelConfig:
        threads.append(threading.current_thread().name)
        if model_id == "slow":
            time.sleep(1.0)
        return real(model_id, with_version)

    monkeypatch.setattr(registry, "_load", watched)

    async def main() -> None:
        assert (await registry.aload("good")).model_id == "good"
        with pytest.raises(ModelNotFound):
            await registry.aload("absent")
        with pytest.raises(ModelConfigError):
            await registry.aload("bad")
        _model(models, "slow")
        started = time.monotonic()
        with pytest.raises(ModelReadError, match="took longer than 0.3 s"):
            await registry.aload("slow")
        assert time.monotonic() - started < 0.9

    try:
        asyncio.run(main())
    finally:
        registry.close()
    assert threads and all(name.startswith("model-read") for name in threads)
