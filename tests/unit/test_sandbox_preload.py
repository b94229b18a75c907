"""The zygote finds and compiles a worker module's ``__main__`` once; a worker runs it as
``python -m`` would (name, spec, argv[0], package-relative imports)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from launcher.sandbox import confine
confine.preload_main("pkg")
confine.preload_main("no_such_package_here")
assert list(confine._MAINS) == ["pkg"], confine._MAINS
confine._run_main(*confine._MAINS["pkg"])
"""


def test_a_preloaded_main_runs_as_python_dash_m_would(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("VALUE = 'helped'\n")
    (package / "__main__.py").write_text(
        "import sys\n"
        "from . import helper\n"
        "print(__name__, __spec__.name, sys.argv[0].endswith('__main__.py'), helper.VALUE)\n"
        "print(sys.modules['__main__'].__dict__ is globals())\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["__main__ pkg.__main__ True helped", "True"]
