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
from spikeforge.sim.link_tb import UARTBankTB

SETTINGS = json.loads(os.environ.get("SPIKEFORGE_UART", "{}"))
MISMATCHES = (-0.02, 0.0, 0.02)


@cocotb.test()
async def receiver_with_clock_mismatch(dut):
    """Remote transmitter at +-2 %: every byte received, none lost, no errors."""
    tb = UARTBankTB(dut, SETTINGS["divisors"])
    await tb.start()
    for phy in tb.phys:
        rng = random.Random(SETTINGS["seed"] + phy.divisor)
        for mismatch in MISMATCHES:
            data = [rng.randrange(256) for _ in range(SETTINGS["bytes"])] + [0x00, 0xFF, 0x55]
            got = await tb.remote_send(phy, data, mismatch=mismatch, rng=rng)
            assert got == data, f"divisor {phy.divisor}, mismatch {mismatch}"
        assert int(phy.frame_errors.value) == 0 and int(phy.overruns.value) == 0


@cocotb.test()
async def transmitter_with_clock_mismatch(dut):
    """Remote receiver at +-2 %: every byte read back; bytes fed back to back leave
    back to back (10 bits each, no gap)."""
    tb = UARTBankTB(dut, SETTINGS["divisors"])
    await tb.start()
    for phy in tb.phys:
        rng = random.Random(SETTINGS["seed"] + phy.divisor + 1)
        for mismatch in MISMATCHES:
            data = [rng.randrange(256) for _ in range(SETTINGS["bytes"])]
            remote = cocotb.start_soon(tb.remote_receive(phy, len(data), mismatch=mismatch))
            taken = await tb.feed(phy, data)
            # Each byte is taken in the last clock of the previous one's stop bit.
            gaps = {b - a for a, b in zip(taken, taken[1:], strict=False)}
            assert gaps == {10 * phy.divisor * tb.period_ps}, gaps
            got = await remote
            assert got == data, f"divisor {phy.divisor}, mismatch {mismatch}"
            await tb.wait_tx_idle(phy)
