"""Shared pytest setup: the ``--runslow`` and ``--coverage-table`` options, the
``tests/`` import path and the coverage tables the RTL suites report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test helpers such as ``netgen`` are imported as top-level modules (``from netgen import ...``).
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


_COVERAGE_TABLES: dict[str, str] = {}


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (long soaks, full training); "
                          "prints the coverage tables")
    parser.addoption("--coverage-table", action="store_true", default=False,
                     help="print the integer model's coverage table of each RTL suite run")


@pytest.fixture(scope="session")
def coverage_tables() -> dict[str, str]:
    """Suite name -> its coverage table (Markdown), printed at the end of the session
    with ``--runslow`` or ``--coverage-table``."""
    return _COVERAGE_TABLES


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _COVERAGE_TABLES or not (config.getoption("--runslow")
                                    or config.getoption("--coverage-table")):
        return
    terminalreporter.section("coverage of the integer model's bins")
    for suite, table in _COVERAGE_TABLES.items():
        terminalreporter.write_line(f"\n{suite}\n{table}")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
