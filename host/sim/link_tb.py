"""cocotb testbenches for the link blocks built by :func:`..verilator.build_module`.

:class:`UARTBankTB` drives a build with one :class:`.uart.UARTPHY` per divisor
(ports ``d<divisor>_<port>``): a remote transmitter into ``rx`` and a remote
receiver on ``tx``, both at the nominal bit time times ``1 + mismatch``, and the
PHY's byte streams.  :class:`AXISLinkTB` drives an :class:`.soc.AXIStreamLink`:
bytes in through ``s_axis`` with ``tvalid`` low on a random fraction of the
clocks, bytes out of ``m_axis`` with ``tready`` low on another, checking
``tlast`` and that nothing is left over.

Timing discipline (as in :mod:`..cocotb_tb`): the testbenches act at falling
clock edges, where the DUT's outputs depend on registers only, so a value
sampled there is what the next rising edge sees; a transfer happens at that
edge iff ``valid & ready`` as sampled / written at the falling edge.  The remote
UART ends act on their own timers (asynchronous to the clock, as a real remote).

This module imports cocotb; import it only inside a simulation.
"""

from __future__ import annotations

import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

__all__ = ["UARTBankTB", "AXISLinkTB", "UART_PORTS"]

UART_PORTS = ("rx", "tx", "rx_data__valid", "rx_data__ready", "rx_data__payload",
              "tx_data__valid", "tx_data__ready", "tx_data__payload", "overruns",
              "frame_errors", "tx_idle")


class _ClockedTB:
    """Clock and reset of a build with ``clk`` and ``rst``."""

    def __init__(self, dut, *, period_ps: int = 10_000):
        self.dut = dut
        self.period_ps = period_ps
        self.cycles = 0

    async def tick(self, n: int = 1) -> None:
        for _ in range(n):
            await FallingEdge(self.dut.clk)
            self.cycles += 1

    async def reset(self) -> None:
        cocotb.start_soon(Clock(self.dut.clk, self.period_ps, unit="ps").start())
        self.dut.rst.value = 1
        await self.tick(3)
        self.dut.rst.value = 0
        await self.tick()


class _PHY:
    def __init__(self, dut, divisor):
        self.divisor = divisor
        for name in UART_PORTS:
            setattr(self, name, getattr(dut, f"d{divisor}_{name}"))


class UARTBankTB(_ClockedTB):
    """The PHYs of a bank build; :meth:`start` resets and idles every pin."""

    def __init__(self, dut, divisors, **kwargs):
        super().__init__(dut, **kwargs)
        self.phys = [_PHY(dut, d) for d in divisors]

    async def start(self) -> None:
        for p in self.phys:
            p.rx.value = 1
            p.rx_data__ready.value = 1  # (no backpressure: a byte not taken is an overrun)
            p.tx_data__valid.value = 0
            p.tx_data__payload.value = 0
        await self.reset()

    def bit_ps(self, phy, mismatch: float) -> int:
        return round(phy.divisor * self.period_ps * (1 + mismatch))

    async def remote_send(self, phy, data, *, mismatch: float, rng: random.Random,
                          gaps: float = 0.2) -> list[int]:
        """Send ``data`` into ``phy.rx`` at the mismatched rate (back to back, with an
        idle gap before a ``gaps`` fraction of the bytes); return what the PHY offered
        on ``rx_data`` meanwhile (and up to 3 bit times after)."""
        received = []

        async def monitor():
            while True:
                await FallingEdge(self.dut.clk)
                if phy.rx_data__valid.value:
                    received.append(int(phy.rx_data__payload.value))

        watcher = cocotb.start_soon(monitor())
        bit_ps = self.bit_ps(phy, mismatch)
        for byte in data:
            if rng.random() < gaps:
                await Timer(rng.randrange(1, 3 * bit_ps), unit="ps")
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                phy.rx.value = bit
                await Timer(bit_ps, unit="ps")
        await Timer(3 * bit_ps, unit="ps")
        watcher.cancel()
        return received

    async def remote_receive(self, phy, count: int, *, mismatch: float) -> list[int]:
        """Read ``count`` bytes from ``phy.tx``, each bit sampled mid-way at the
        mismatched rate; asserts each start and stop bit."""
        bit_ps = self.bit_ps(phy, mismatch)
        got = []
        while len(got) < count:
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
        return got

    async def feed(self, phy, data) -> list[int]:
        """Offer ``data`` on ``tx_data`` back to back (``valid`` held); return the
        simulation time (ps) at which each byte was taken."""
        taken = []
        for byte in data:
            phy.tx_data__valid.value = 1
            phy.tx_data__payload.value = byte
            while True:
                ready = bool(phy.tx_data__ready.value)
                await self.tick()
                if ready:
                    break
            taken.append(cocotb.utils.get_sim_time("ps"))
        phy.tx_data__valid.value = 0
        return taken

    async def wait_tx_idle(self, phy) -> None:
        while not phy.tx_idle.value:
            await self.tick()
        assert phy.tx.value == 1


class AXISLinkTB(_ClockedTB):
    """An ``AXIStreamLink`` build: :meth:`exchange` sends bytes and collects replies."""

    def __init__(self, dut, *, seed: int = 0, **kwargs):
        super().__init__(dut, **kwargs)
        self.rng = random.Random(seed)

    async def start(self) -> None:
        self.dut.s_axis_tvalid.value = 0
        self.dut.s_axis_tdata.value = 0
        self.dut.s_axis_tlast.value = 0
        self.dut.m_axis_tready.value = 0
        await self.reset()

    async def exchange(self, wire: bytes, replies: int, *, idle: float, backpressure: float,
                       quiet: int = 300, max_cycles: int = 200_000) -> bytes:
        """Drive ``wire`` in and collect the output until ``replies`` frames (0x00
        delimiters) are out; then ``quiet`` more clocks in which nothing may come.
        Asserts every byte was taken and ``tlast`` is high on exactly the delimiters."""
        d = self.dut
        out, lasts = bytearray(), []
        pos = 0
        left = None
        start = self.cycles
        while left is None or left > 0:
            send = pos < len(wire) and self.rng.random() >= idle
            ready = self.rng.random() >= backpressure
            d.s_axis_tvalid.value = int(send)
            d.s_axis_tdata.value = wire[pos] if send else 0
            d.s_axis_tlast.value = int(send and wire[pos] == 0)
            d.m_axis_tready.value = int(ready)
            if send and d.s_axis_tready.value:
                pos += 1
            if ready and d.m_axis_tvalid.value:
                out.append(int(d.m_axis_tdata.value))
                lasts.append(int(d.m_axis_tlast.value))
            await self.tick()
            assert self.cycles - start < max_cycles, "the device hangs"
            if left is None and pos == len(wire) and out.count(0) >= replies:
                left = quiet
                d.s_axis_tvalid.value = 0
            elif left is not None:
                left -= 1
                assert not d.m_axis_tvalid.value, "bytes left over after the last reply"
        assert pos == len(wire)
        assert lasts == [int(b == 0) for b in out]  # tlast on exactly the delimiters
        return bytes(out)
