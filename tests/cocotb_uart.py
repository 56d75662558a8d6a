"""cocotb test module: the UART PHY (``UARTPHY``) on Verilator.  Run by
``tests/test_link_verilator.py`` (not collected by pytest itself).

Settings (environment ``SPIKEFORGE_UART``, JSON): ``divisor`` (the build's clocks
per bit), ``bytes`` per run, ``seed``.  The remote end runs at the nominal bit
time times ``1 + mismatch`` for mismatch -2 %, 0, +2 %: the receiver must take
back-to-back bytes (stop bit straight into the next start bit) and bytes after
random idle gaps, with no framing error and no overrun; the transmitter must send
bytes fed back to back with no gap (10 bits per byte) and be read correctly by a
remote receiver sampling mid-bit at its own (mismatched) rate.  Each run ends
with the PHY idle and nothing left over.
"""

from __future__ import annotations

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

PERIOD_PS = 10_000
SETTINGS = json.loads(os.environ.get("SPIKEFORGE_UART", "{}"))
MISMATCHES = (-0.02, 0.0, 0.02)


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, PERIOD_PS, unit="ps").start())
    dut.rx.value = 1
    dut.rx_data__ready.value = 1  # (no backpressure: a byte not taken is an overrun)
    dut.tx_data__valid.value = 0
    dut.tx_data__payload.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)


@cocotb.test()
async def receiver_with_clock_mismatch(dut):
    """Remote transmitter at +-2 %: every byte received, none lost, no errors."""
    await _start(dut)
    d = SETTINGS["divisor"]
    rng = random.Random(SETTINGS["seed"])
    received = []

    async def monitor():
        while True:
            await FallingEdge(dut.clk)
            if dut.rx_data__valid.value:
                received.append(int(dut.rx_data__payload.value))

    cocotb.start_soon(monitor())
    for mismatch in MISMATCHES:
        bit_ps = round(d * PERIOD_PS * (1 + mismatch))
        data = [rng.randrange(256) for _ in range(SETTINGS["bytes"])] + [0x00, 0xFF, 0x55]
        start = len(received)
        for byte in data:
            if rng.random() < 0.2:  # an idle gap now and then, else back to back
                await Timer(rng.randrange(1, 3 * bit_ps), unit="ps")
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                dut.rx.value = bit
                await Timer(bit_ps, unit="ps")
        await Timer(3 * bit_ps, unit="ps")
        assert received[start:] == data, f"mismatch {mismatch}"
    assert int(dut.frame_errors.value) == 0 and int(dut.overruns.value) == 0


@cocotb.test()
async def transmitter_with_clock_mismatch(dut):
    """Remote receiver at +-2 %: every byte read back; bytes fed back to back leave
    back to back (10 bits each, no gap)."""
    await _start(dut)
    d = SETTINGS["divisor"]
    rng = random.Random(SETTINGS["seed"] + 1)
    for mismatch in MISMATCHES:
        bit_ps = round(d * PERIOD_PS * (1 + mismatch))
        data = [rng.randrange(256) for _ in range(SETTINGS["bytes"])]
        got = []

        async def remote(got=got, data=data, bit_ps=bit_ps):
            while len(got) < len(data):
                await FallingEdge(dut.tx)
                await Timer(bit_ps // 2, unit="ps")
                assert not dut.tx.value, "a glitch, not a start bit"
                byte = 0
                for i in range(8):
                    await Timer(bit_ps, unit="ps")
                    byte |= int(dut.tx.value) << i
                await Timer(bit_ps, unit="ps")
                assert dut.tx.value == 1, "stop bit"
                got.append(byte)

        task = cocotb.start_soon(remote())
        first = None
        for byte in data:  # back to back: valid held, the next byte offered at once
            dut.tx_data__valid.value = 1
            dut.tx_data__payload.value = byte
            while True:
                # At a falling edge ``ready`` (registers only) is what the next rising
                # edge sees: the byte is taken there iff it is high.
                ready = bool(dut.tx_data__ready.value)
                await FallingEdge(dut.clk)
                if ready:
                    break
            if first is None:
                first = cocotb.utils.get_sim_time("ps")
        dut.tx_data__valid.value = 0
        # Each byte is taken in the last clock of the previous one's stop bit: every
        # byte but the last took exactly 10 bit times.
        last = cocotb.utils.get_sim_time("ps")
        assert last - first == (len(data) - 1) * 10 * d * PERIOD_PS, (last - first)
        await task
        assert got == data, f"mismatch {mismatch}"
        while not dut.tx_idle.value:
            await FallingEdge(dut.clk)
        assert dut.tx.value == 1
