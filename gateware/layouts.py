"""Amaranth layouts of the contract's field tables, and a register helper."""

from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data

from ..contract.config import SIGNED_FIELDS, CoreConfig

__all__ = ["struct_layout", "input_layout", "registered"]


def struct_layout(fields) -> data.StructLayout:
    """An Amaranth layout for a field table of :mod:`..contract.config` (LSB first)."""
    return data.StructLayout({name: signed(w) if name in SIGNED_FIELDS else unsigned(w)
                              for name, w in fields})


def input_layout(c: CoreConfig) -> data.StructLayout:
    """The core's input stream: one event ``(index, value)`` or the step's end marker."""
    return data.StructLayout({"index": unsigned(c.idx_bits), "value": signed(c.in_bits),
                              "end": unsigned(1)})


def registered(m: Module, value, name: str):
    """``value`` one clock later, in a reset-less register named ``name``."""
    q = Signal.like(value, name=name, reset_less=True)
    m.d.sync += q.eq(value)
    return q
