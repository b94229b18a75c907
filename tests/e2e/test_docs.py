"""Every example in README.md and docs/ runs: Python snippets and shell lines against a real
launcher, model files as model folders (see tests/support/doc_examples.py for the marks).

The examples' launcher is this module's own: gRPC on a Unix socket (``127.0.0.1:50051`` in an
example stands for it), the platform HTTP API, ``/metrics`` and ``/healthz`` on a free loopback
port (``127.0.0.1:8080`` stands for it), and two fake GPUs (``--fake-gpus``), so that the
GPU examples of the CLI run on a machine without any."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher.cli import build_parser
from tests.support.doc_examples import PROJECT, Example, documents, examples
from tests.support.launcher_proc import LauncherProcess
from tests.support.platform_http import http_launcher

ALL = [example for doc in documents() for example in examples(doc)]
RUNNABLE = [e for e in ALL if e.kind in ("python", "sh") and e.skip is None]
BIN = Path(sys.executable).parent
FAKE_GPUS = "0:NVIDIA H100,1:NVIDIA H100"


@dataclass
class DocsLauncher:
    proc: LauncherProcess
    http: str  # HOST:PORT of the HTTP API

    @property
    def root(self) -> Path:
        return self.proc.root

    @property
    def address(self) -> str:
        return self.proc.address


@pytest.fixture(scope="module")
def docs_launcher() -> Iterator[DocsLauncher]:
    args = ["--max-concurrent-jobs", "4", "--fake-gpus", FAKE_GPUS]
    with tempfile.TemporaryDirectory(prefix="ld-") as root:
        with http_launcher(Path(root), args) as (proc, base):
            yield DocsLauncher(proc, base.removeprefix("http://").removesuffix("/v0"))


def _install_doc_models(launcher: DocsLauncher) -> None:
    for example in ALL:
        if example.kind == "file" and example.model is not None:
            folder = launcher.root / "models" / example.model
            folder.mkdir(parents=True, exist_ok=True)
            (folder / str(example.filename)).write_text(example.text)


def _for_this_launcher(text: str, launcher: DocsLauncher) -> str:
    text = text.replace("127.0.0.1:50051", launcher.address)
    text = text.replace("127.0.0.1:8080", launcher.http)
    return text.replace(".venv/bin/", f"{BIN}/")


@pytest.mark.parametrize("example", RUNNABLE, ids=[e.name for e in RUNNABLE])
def test_the_example_runs(example: Example, docs_launcher: DocsLauncher, tmp_path: Path) -> None:
    launcher = docs_launcher
    _install_doc_models(launcher)
    text = _for_this_launcher(example.text, launcher)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(PROJECT),
        "LAUNCHER_ADDRESS": launcher.address,
    }
    if example.kind == "python":
        argv = [sys.executable, "-c", text]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", text]
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{example.name}\n{done.stdout}\n{done.stderr}"


def test_every_example_is_run_or_says_why_not() -> None:
    assert RUNNABLE, "no examples found"
    for example in ALL:
        if example.skip is not None:
            assert example.skip.strip(), f"{example.name}: a 'not run' mark needs a reason"
        if example.kind == "file":
            assert example.model, f"{example.name}: a model file needs a <!-- model: ID --> mark"


def test_the_docs_do_not_point_outside_the_repository() -> None:
    for doc in documents():
        assert "../shared" not in doc.read_text(), doc


_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d.])")


def test_run_examples_stay_on_loopback() -> None:
    """An example that is run talks to loopback only: no other IPv4 address, no Ray cluster
    started on the machine's addresses (mark such a block ``not run`` with the reason)."""
    for example in RUNNABLE:
        text = example.text
        assert "ray start" not in text, f"{example.name}: starts a Ray cluster"
        for match in _IPV4.finditer(text):
            assert match.group(1) == "127", f"{example.name}: {match.group(0)} is not loopback"


_LINK = re.compile(r"\]\(((?:docs/)?[\w./-]+\.md)\)")


def test_every_linked_document_exists() -> None:
    for doc in documents():
        for target in _LINK.findall(doc.read_text()):
            assert (doc.parent / target).is_file(), f"{doc.name} links {target}, which is missing"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_serve_flag_and_subcommand_is_documented() -> None:
    """docs/operating.md names every flag of ``launcher serve``; docs/cli.md every subcommand."""
    commands = _subparsers(build_parser())
    operating = (PROJECT / "docs" / "operating.md").read_text()
    for action in commands["serve"]._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}" in operating, f"docs/operating.md does not name serve {flag}"
    cli = (PROJECT / "docs" / "cli.md").read_text()
    for name, sub in commands.items():
        assert f"`{name}" in cli or f"launcher {name}" in cli, f"docs/cli.md lacks {name}"
        for nested in _subparsers(sub):
            assert f"{name} {nested}" in cli, f"docs/cli.md lacks {name} {nested}"
