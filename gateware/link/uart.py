"""UART PHY: 8N1 receiver and transmitter with a clock divisor.

``uart_divisor(clk_freq=, baud=)`` is the number of clocks per bit (rounded),
refused if under 4 or if the rounding misses the baud rate by more than 1 %.

:class:`UARTRx` synchronises ``rx`` (two flip-flops), waits for a falling edge,
checks the start bit half a bit later and samples each data bit and the stop
bit in its middle (every ``divisor`` clocks from there); it is ready for the next
start bit right after sampling the stop bit, so a sender whose clock is off by a
few percent (the byte's last sample drifts by 9.5 x the mismatch of a bit) is
received back to back.  A good byte is offered on ``data`` for one clock
(``valid``; there is no backpressure: a byte not taken is lost and counted in
``overruns``); a stop bit read as 0 drops the byte and counts ``frame_errors``.
Latency: the byte is out 2 clocks after the middle of its stop bit.

:class:`UARTTx` sends each byte taken from ``data`` as start bit, 8 data bits
(LSB first), stop bit, ``divisor`` clocks each; ``ready`` rises in the last
clock of a stop bit, so bytes go out back to back (10 x ``divisor`` clocks per
byte).  ``tx`` idles high.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..checks import CheckedComponent, check_integers

__all__ = ["uart_divisor", "UARTRx", "UARTTx", "UARTPHY"]


def uart_divisor(*, clk_freq, baud) -> int:
    """Clocks per bit for ``baud`` at ``clk_freq`` Hz (validated, see the module docstring)."""
    check_integers(clk_freq=(clk_freq, 1), baud=(baud, 1))
    divisor = (clk_freq + baud // 2) // baud
    if divisor < 4:
        raise ValueError(f"baud {baud!r} is too fast for clk_freq {clk_freq!r}: "
                         f"{divisor} clocks per bit, at least 4 needed")
    error = abs(clk_freq / divisor - baud) / baud
    if error > 0.01:
        raise ValueError(f"baud {baud!r} is {error:.1%} off with clk_freq {clk_freq!r} "
                         f"(divisor {divisor}); at most 1% allowed")
    return divisor


def _check_divisor(*, divisor):
    check_integers(divisor=(divisor, 4))


class UARTRx(CheckedComponent):
    """8N1 receiver (see the module docstring).  Ports: ``rx`` (in, idle high),
    ``data`` (8-bit stream out, one-clock ``valid``), ``overruns`` and
    ``frame_errors`` (16-bit counters, wrap)."""

    check_arguments = staticmethod(_check_divisor)

    def __init__(self, *, divisor: int):
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "overruns": Out(16),
            "frame_errors": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]
        cnt = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += cnt.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    with m.If(line):
                        m.next = "IDLE"  # a glitch, not a start bit
                    with m.Else():
                        m.d.sync += [cnt.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), cnt.eq(d - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += cnt.eq(cnt - 1)
                with m.If(cnt == 0):
                    with m.If(line):
                        m.d.comb += [self.data.valid.eq(1), self.data.payload.eq(shreg)]
                        with m.If(~self.data.ready):
                            m.d.sync += self.overruns.eq(self.overruns + 1)
                    with m.Else():
                        m.d.sync += self.frame_errors.eq(self.frame_errors + 1)
                    m.next = "IDLE"
        return m


class UARTTx(CheckedComponent):
    """8N1 transmitter (see the module docstring).  Ports: ``data`` (8-bit stream
    in), ``tx`` (out, idle high), ``idle`` (nothing being sent)."""

    check_arguments = staticmethod(_check_divisor)

    def __init__(self, *, divisor: int):
        self.divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shreg = Signal(10, init=0x3FF)
        bits = Signal(range(11))
        cnt = Signal(range(d))
        # Timing: ``ready`` is a flip-flop, ``(bits == 0) | ((bits == 1) & (cnt == 0))``
        # computed from the next values (``d - 1`` is never 0), so the sender's
        # handshake logic starts at a register.
        ready = Signal(init=1)
        m.d.comb += [
            self.tx.eq(shreg[0]),
            self.idle.eq(bits == 0),
            self.data.ready.eq(ready),
        ]
        with m.If(self.data.valid & ready):
            m.d.sync += [shreg.eq(Cat(0, self.data.payload, 1)), bits.eq(10), cnt.eq(d - 1),
                         ready.eq(0)]
        with m.Elif(bits != 0):
            m.d.sync += [cnt.eq(cnt - 1), ready.eq((bits == 1) & (cnt == 1))]
            with m.If(cnt == 0):
                m.d.sync += [shreg.eq(Cat(shreg[1:], 1)), bits.eq(bits - 1), cnt.eq(d - 1),
                             ready.eq(bits == 1)]
        with m.Else():
            m.d.sync += ready.eq(1)
        return m


class UARTPHY(CheckedComponent):
    """Receiver and transmitter at one ``divisor``: ``rx`` / ``tx`` pins, ``rx_data``
    (stream out, no backpressure) and ``tx_data`` (stream in), the receiver's
    counters and ``tx_idle``."""

    check_arguments = staticmethod(_check_divisor)

    def __init__(self, *, divisor: int):
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "rx_data": Out(stream.Signature(8)),
            "tx_data": In(stream.Signature(8)),
            "overruns": Out(16),
            "frame_errors": Out(16),
            "tx_idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.rx = rx = UARTRx(divisor=self.divisor)
        m.submodules.tx = tx = UARTTx(divisor=self.divisor)
        m.d.comb += [rx.rx.eq(self.rx), self.tx.eq(tx.tx), self.overruns.eq(rx.overruns),
                     self.frame_errors.eq(rx.frame_errors), self.tx_idle.eq(tx.idle)]
        wiring.connect(m, rx.data, wiring.flipped(self.rx_data))
        wiring.connect(m, wiring.flipped(self.tx_data), tx.data)
        return m
