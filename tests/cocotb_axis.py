"""cocotb test module: the AXI-Stream wrapper of the byte-stream SoC
(``AXIStreamLink``) on Verilator.  Run by ``tests/test_link_verilator.py``.

Settings (environment ``SPIKEFORGE_AXIS``, JSON): ``config`` (the build's
CoreConfig fields), ``seed``.  Requests (INFO, WRITE, READ, an unknown command,
a bad-CRC frame) go in through ``s_axis`` with ``tvalid`` low on a random
fraction of the clocks; ``m_axis_tready`` is low on another (backpressure).
Checked: every reply equals what host/protocol.py expects, ``tlast`` is high on
exactly the delimiter bytes, every byte sent was taken, and nothing else comes
out afterwards (nothing left over).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge
from spikeforge.gateware.layout import CoreConfig, Region
from spikeforge.gateware.link import device_info
from spikeforge.protocol import (
    ERROR_REPLY,
    Command,
    ErrorCode,
    Frame,
    FrameDecoder,
    cobs_encode,
    pack_error,
    pack_read,
    pack_read_reply,
    pack_write,
    reply_cmd,
)

SETTINGS = json.loads(os.environ.get("SPIKEFORGE_AXIS", "{}"))


async def _run(dut, wire: bytes, replies: int, *, idle: float, backpressure: float, rng):
    """Drive ``wire`` in, collect bytes and tlast flags out, until ``replies`` frames are
    out; then 300 more clocks that must be quiet."""
    out, lasts = bytearray(), []
    pos = 0
    quiet = None
    cycles = 0
    while quiet is None or quiet > 0:
        send = pos < len(wire) and rng.random() >= idle
        ready = rng.random() >= backpressure
        dut.s_axis_tvalid.value = int(send)
        dut.s_axis_tdata.value = wire[pos] if send else 0
        dut.s_axis_tlast.value = int(send and wire[pos] == 0)
        dut.m_axis_tready.value = int(ready)
        # At a falling edge the outputs depend on registers only: a beat moves at
        # the next rising edge iff tvalid and tready as sampled / written here.
        if send and dut.s_axis_tready.value:
            pos += 1
        if ready and dut.m_axis_tvalid.value:
            out.append(int(dut.m_axis_tdata.value))
            lasts.append(int(dut.m_axis_tlast.value))
        await FallingEdge(dut.clk)
        cycles += 1
        assert cycles < 200_000, "the device hangs"
        if quiet is None and pos == len(wire) and out.count(0) >= replies:
            quiet = 300
        elif quiet is not None:
            quiet -= 1
            assert not dut.m_axis_tvalid.value, "bytes left over after the last reply"
    assert pos == len(wire)
    assert lasts == [int(b == 0) for b in out]  # tlast on exactly the delimiters
    return bytes(out)


@cocotb.test()
async def axis_requests_with_backpressure(dut):
    config = CoreConfig(**SETTINGS["config"])
    rng = random.Random(SETTINGS["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    for idle, backpressure in ((0.0, 0.0), (0.3, 0.5), (0.6, 0.8)):
        base = config.address(Region.WEIGHTS, config.lanes - 1, 0)
        words = [rng.randrange(1 << config.w_bits) for _ in range(rng.randrange(1, 128))]
        bad = bytearray(Frame(Command.INFO, 9).to_body())
        bad[-2] ^= 1
        requests = [
            (Frame(Command.INFO, 1), Frame(reply_cmd(Command.INFO), 1, device_info(config))),
            (Frame(Command.WRITE, 2, pack_write(base, words)),
             Frame(reply_cmd(Command.WRITE), 2)),
            (Frame(Command.READ, 3, pack_read(base, len(words))),
             Frame(reply_cmd(Command.READ), 3, pack_read_reply(words))),
            (Frame(0x66, 4), Frame(ERROR_REPLY, 4, pack_error(ErrorCode.UNKNOWN_COMMAND))),
        ]
        wires = [req.encode() for req, _ in requests]
        wire = wires[0] + cobs_encode(bytes(bad)) + b"\0" + b"".join(wires[1:])  # dropped
        out = await _run(dut, wire, len(requests), idle=idle, backpressure=backpressure,
                         rng=rng)
        dec = FrameDecoder()
        assert dec.feed(out) == [rep for _, rep in requests]
        assert not any(dec.dropped.values()) and dec.buffered == 0
