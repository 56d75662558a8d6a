"""Shared pytest setup: the ``--runslow`` option and the ``tests/`` import path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test helpers such as ``netgen`` are imported as top-level modules (``from netgen import ...``).
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (long soaks, full training)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
