"""Block-RAM read ports without Yosys' read/write collision logic."""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Module, Signal
from amaranth.lib import memory

__all__ = ["NO_RW_CHECK", "nrw_read_port"]

NO_RW_CHECK = {"no_rw_check": 1}
"""Memory attributes telling Yosys that read/write collisions need no old-data
bypass (the design never uses such a read's data); see :func:`nrw_read_port`."""


def nrw_read_port(m: Module, mem: memory.Memory, name: str) -> SimpleNamespace:
    """A read port of ``mem`` (marked ``NO_RW_CHECK``) with one clock of latency
    (``addr``, ``data``), the same as a synchronous ``read_port()`` in simulation.

    Built as an asynchronous port and a reset-less register named ``<name>_nrw``:
    Yosys honours ``no_rw_check`` only when it merges such a register into the
    port, and then maps the memory to a block RAM without the old-data bypass it
    otherwise builds (on iCE40 a flip-flop per data bit for the delayed write and
    one for the bypass, and a multiplexer).  Block RAM outputs have no power-up
    value, so the board build removes the register's (``boards/build.py``,
    ``setattr -unset init w:*_nrw``); its data is never used before a read."""
    port = mem.read_port(domain="comb")
    data = Signal(mem.shape, name=f"{name}_nrw", reset_less=True)
    m.d.sync += data.eq(port.data)
    return SimpleNamespace(addr=port.addr, data=data)
