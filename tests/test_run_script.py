"""The top-level ``./run``: usage, and its set-up is idempotent (installs once,
again only when pyproject.toml changes), with a stand-in interpreter that logs
what it is asked to do."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _sandbox(tmp_path: Path) -> Path:
    shutil.copy2(ROOT / "run", tmp_path / "run")
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    for name in ("python", "spikeforge"):  # log the call, succeed
        tool = bin_ / name
        tool.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/calls"\n')
        tool.chmod(0o755)
    return tmp_path


def _run(root: Path, *args: str) -> tuple[int, list[str]]:
    calls = root / "calls"
    calls.unlink(missing_ok=True)
    proc = subprocess.run([str(root / "run"), *args], capture_output=True, text=True,
                          timeout=60)
    return proc.returncode, calls.read_text().splitlines() if calls.exists() else []


def test_usage():
    proc = subprocess.run([str(ROOT / "run")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: ./run demo [ARGS] | ./run tests [PYTEST ARGS]")


def test_setup_installs_once_then_only_after_a_change(tmp_path):
    root = _sandbox(tmp_path)
    code, calls = _run(root, "setup")
    assert code == 0
    assert calls == ["python -m pip install --quiet --upgrade pip",
                     "python -m pip install --quiet torch==2.13.0",
                     "python -m pip install --quiet -e .[test]"]
    code, calls = _run(root, "tests", "-x", "tests/test_framing.py")
    assert code == 0 and calls == ["python -m pytest -q -x tests/test_framing.py"]
    code, calls = _run(root, "demo", "--json")
    assert code == 0 and calls == ["spikeforge demo --json"]
    with (root / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    code, calls = _run(root, "setup")
    assert code == 0 and len(calls) == 3
