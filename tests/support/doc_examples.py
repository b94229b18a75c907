"""The examples of README.md and docs/*.md, as the docs test runs them.

A fenced block's info string says what it is: ``python`` (a script, run against a test
launcher), ``python main.py`` / ``toml model.toml`` (files of the model folder named by the
``<!-- model: ID -->`` comment just above the block), ``sh`` (shell lines, each run against the
test launcher); a ``toml`` block without a file name is a fragment shown for reading. A
``<!-- not run: REASON -->`` comment just above a block says why it is not run (a command that
starts a server, for example); every other block of those kinds is run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
_MARK = re.compile(r"<!--\s*(model|not run):\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    kind: str  # "python", "sh", "file"
    text: str
    filename: str | None = None
    model: str | None = None
    skip: str | None = None

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def documents() -> list[Path]:
    return [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]


def examples(path: Path) -> list[Example]:
    text = path.read_text()
    found = []
    for match in _FENCE.finditer(text):
        info = match.group(1).split()
        if not info or info[0] not in ("python", "sh", "toml"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = _MARK.search(before)
        line = text.count("\n", 0, match.start()) + 1
        doc = str(path.relative_to(PROJECT))
        model = mark.group(2) if mark and mark.group(1) == "model" else None
        skip = mark.group(2) if mark and mark.group(1) == "not run" else None
        if len(info) > 1:
            kind, filename = "file", info[1]
        elif info[0] == "toml":
            continue  # a fragment shown for reading, not a file of a model
        else:
            kind, filename = info[0], None
        found.append(Example(doc, line, kind, match.group(2), filename, model, skip))
    return found
