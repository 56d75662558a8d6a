"""cocotb test module: the AXI-Stream wrapper of the byte-stream SoC
(``AXIStreamLink``) on Verilator.  Run by ``tests/test_link_verilator.py``.

Settings (environment ``SPIKEFORGE_AXIS``, JSON): ``config`` (the build's
CoreConfig fields), ``seed``.  Requests (INFO, WRITE, READ, an unknown command,
a bad-CRC frame) go in through ``s_axis`` with ``tvalid`` low on a random
fraction of the clocks; ``m_axis_tready`` is low on another (backpressure).
Checked: every reply equals what the spikeforge.contract protocol expects, ``tlast`` is high on
exactly the delimiter bytes, every byte sent was taken, and nothing else comes
out afterwards (nothing left over).
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from spikeforge.contract.config import CoreConfig, Region
from spikeforge.contract.framing import Frame, FrameDecoder, cobs_encode
from spikeforge.contract.info import device_info
from spikeforge.contract.payloads import pack_error, pack_read, pack_read_reply, pack_write
from spikeforge.contract.protocol import ERROR_REPLY, Command, ErrorCode, reply_cmd
from spikeforge.sim.link_tb import AXISLinkTB

SETTINGS = json.loads(os.environ.get("SPIKEFORGE_AXIS", "{}"))


@cocotb.test()
async def axis_requests_with_backpressure(dut):
    config = CoreConfig.from_dict(SETTINGS["config"])
    tb = AXISLinkTB(dut, seed=SETTINGS["seed"])
    await tb.start()
    rng = random.Random(SETTINGS["seed"])
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
        out = await tb.exchange(wire, len(requests), idle=idle, backpressure=backpressure)
        dec = FrameDecoder()
        assert dec.feed(out) == [rep for _, rep in requests]
        assert not any(dec.dropped.values()) and dec.buffered == 0
