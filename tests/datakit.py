"""Shared helpers of the data tests (``test_data.py``, ``test_events.py``)."""

from __future__ import annotations

import re


def exactly(message: str) -> str:
    return re.escape(message) + "$"
