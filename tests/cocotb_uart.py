"""cocotb test module: the UART PHY (``UARTPHY``) on Verilator.  Run by
``tests/test_link_verilator.py`` (not collected by pytest itself).

The build holds one PHY per baud rate, ports prefixed ``d<divisor>_``.  Settings
(environment ``SPIKEFORGE_UART``, JSON): ``divisors`` (the build's clocks per
bit), ``bytes`` per run, ``seed``.  The remote end runs at the nominal bit
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


class PHY:
    """The ports of one PHY of the build (``d<divisor>_*``)."""

    def __init__(self, dut, divisor):
        self.divisor = divisor
        for name in ("rx", "tx", "rx_data__valid", "rx_data__ready", "rx_data__payload",
                     "tx_data__valid", "tx_data__ready", "tx_data__payload", "overruns",
                     "frame_errors", "tx_idle"):
            setattr(self, name, getattr(dut, f"d{divisor}_{name}"))


async def _start(dut):
    cocotb.start_soon(Clock(dut.clk, PERIOD_PS, unit="ps").start())
    phys = [PHY(dut, d) for d in SETTINGS["divisors"]]
    for p in phys:
        p.rx.value = 1
        p.rx_data__ready.value = 1  # (no backpressure: a byte not taken is an overrun)
        p.tx_data__valid.value = 0
        p.tx_data__payload.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    await FallingEdge(dut.clk)
    return phys


@cocotb.test()
async def receiver_with_clock_mismatch(dut):
    """Remote transmitter at +-2 %: every byte received, none lost, no errors."""
    for phy in await _start(dut):
        await _receive(dut, phy)


async def _receive(dut, phy):
    d = phy.divisor
    rng = random.Random(SETTINGS["seed"] + d)
    received = []

    async def monitor():
        while True:
            await FallingEdge(dut.clk)
            if phy.rx_data__valid.value:
                received.append(int(phy.rx_data__payload.value))

    watcher = cocotb.start_soon(monitor())
    for mismatch in MISMATCHES:
        bit_ps = round(d * PERIOD_PS * (1 + mismatch))
        data = [rng.randrange(256) for _ in range(SETTINGS["bytes"])] + [0x00, 0xFF, 0x55]
        start = len(received)
        for byte in data:
            if rng.random() < 0.2:  # an idle gap now and then, else back to back
                await Timer(rng.randrange(1, 3 * bit_ps), unit="ps")
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                phy.rx.value = bit
                await Timer(bit_ps, unit="ps")
        await Timer(3 * bit_ps, unit="ps")
        assert received[start:] == data, f"divisor {d}, mismatch {mismatch}"
    watcher.cancel()
    assert int(phy.frame_errors.value) == 0 and int(phy.overruns.value) == 0


@cocotb.test()
async def transmitter_with_clock_mismatch(dut):
    """Remote receiver at +-2 %: every byte read back; bytes fed back to back leave
    back to back (10 bits each, no gap)."""
    for phy in await _start(dut):
        await _transmit(dut, phy)


async def _transmit(dut, phy):
    d = phy.divisor
    rng = random.Random(SETTINGS["seed"] + d + 1)
    for mismatch in MISMATCHES:
        bit_ps = round(d * PERIOD_PS * (1 + mismatch))
        data = [rng.randrange(256) for _ in range(SETTINGS["bytes"])]
        got = []

        async def remote(got=got, data=data, bit_ps=bit_ps):
            while len(got) < len(data):
                await FallingEdge(phy.tx)
                await Timer(bit_ps // 2, unit="ps")
                assert not phy.tx.value, "a glitch, not a start bit"
                byte = 0
                for i in range(8):
                    await Timer(bit_ps, unit="ps")
                    byte |= int(phy.tx.value) << i
                await Timer(bit_ps, unit="ps")
                assert phy.tx.value == 1, "stop bit"
                got.append(byte)

        task = cocotb.start_soon(remote())
        first = None
        for byte in data:  # back to back: valid held, the next byte offered at once
            phy.tx_data__valid.value = 1
            phy.tx_data__payload.value = byte
            while True:
                # At a falling edge ``ready`` (registers only) is what the next rising
                # edge sees: the byte is taken there iff it is high.
                ready = bool(phy.tx_data__ready.value)
                await FallingEdge(dut.clk)
                if ready:
                    break
            if first is None:
                first = cocotb.utils.get_sim_time("ps")
        phy.tx_data__valid.value = 0
        # Each byte is taken in the last clock of the previous one's stop bit: every
        # byte but the last took exactly 10 bit times.
        last = cocotb.utils.get_sim_time("ps")
        assert last - first == (len(data) - 1) * 10 * d * PERIOD_PS, (last - first)
        await task
        assert got == data, f"divisor {d}, mismatch {mismatch}"
        while not phy.tx_idle.value:
            await FallingEdge(dut.clk)
        assert phy.tx.value == 1
