"""Test helpers for the link: drive the byte-stream SoC (or the frame blocks) on
Amaranth's simulator, and build requests / check replies with host/protocol.py."""

from __future__ import annotations

import random

from amaranth.sim import Simulator
from spikeforge.protocol import Frame, FrameDecoder


def run_byte_stream(dut, data: bytes, *, replies: int, idle: float = 0.0,
                    backpressure: float = 0.0, seed: int = 0, max_cycles: int = 400_000,
                    rx=None, tx=None):
    """Feed ``data`` into ``dut.rx`` and collect ``dut.tx`` until ``replies`` frames
    (0x00 delimiters) came out and the input is consumed; ``idle`` / ``backpressure``
    are the fractions of clocks with ``rx.valid`` / ``tx.ready`` low.  One testbench
    drives both streams (one process per clock).  Returns ``(out_bytes, cycles)``;
    after the last reply it runs 200 more clocks and checks that nothing else comes."""
    rx = rx if rx is not None else dut.rx
    tx = tx if tx is not None else dut.tx
    rng = random.Random(seed)
    out = bytearray()
    state = {"cycles": 0}

    async def bench(ctx):
        pos = 0
        extra = None
        while state["cycles"] < max_cycles:
            send = pos < len(data) and rng.random() >= idle
            ready = rng.random() >= backpressure
            ctx.set(rx.valid, int(send))
            ctx.set(rx.payload, data[pos] if send else 0)
            ctx.set(tx.ready, int(ready))
            if send and ctx.get(rx.ready):
                pos += 1
            if ready and ctx.get(tx.valid):
                out.append(ctx.get(tx.payload))
            await ctx.tick()
            state["cycles"] += 1
            if extra is None and pos == len(data) and out.count(0) >= replies:
                extra = 200
            if extra is not None:
                extra -= 1
                if extra == 0:
                    break
        state["consumed"] = pos

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    if state["consumed"] != len(data):
        raise AssertionError(f"the device took {state['consumed']} of {len(data)} bytes in "
                             f"{state['cycles']} clocks")
    if out.count(0) != replies:
        raise AssertionError(f"{out.count(0)} replies, {replies} expected")
    return bytes(out), state["cycles"]


def decode_replies(out: bytes) -> list[Frame]:
    """Every reply frame in ``out``; fails on any bad frame (the device's output must be clean)."""
    dec = FrameDecoder()
    frames = dec.feed(out)
    assert not any(dec.dropped.values()), dec.dropped
    assert dec.buffered == 0
    return frames


def write_requests(writes, *, start_seq: int = 0) -> list[Frame]:
    """WRITE frames for ``(address, word)`` pairs: runs of consecutive addresses,
    at most MAX_WRITE_WORDS words each, sequence numbers from ``start_seq``."""
    from spikeforge.protocol import MAX_WRITE_WORDS, Command, pack_write

    words = dict(writes)
    runs: list[tuple[int, list[int]]] = []
    for addr in sorted(words):
        if runs and runs[-1][0] + len(runs[-1][1]) == addr \
                and len(runs[-1][1]) < MAX_WRITE_WORDS:
            runs[-1][1].append(words[addr])
        else:
            runs.append((addr, [words[addr]]))
    return [Frame(Command.WRITE, (start_seq + i) % 256, pack_write(a, ws))
            for i, (a, ws) in enumerate(runs)]


def read_requests(addresses, *, start_seq: int = 0) -> list[tuple[Frame, list[int]]]:
    """READ frames covering ``addresses`` (runs of consecutive ones), each with its addresses."""
    from spikeforge.protocol import MAX_READ_WORDS, Command, pack_read

    runs: list[list[int]] = []
    for addr in sorted(set(addresses)):
        if runs and runs[-1][-1] + 1 == addr and len(runs[-1]) < MAX_READ_WORDS:
            runs[-1].append(addr)
        else:
            runs.append([addr])
    return [(Frame(Command.READ, (start_seq + i) % 256, pack_read(r[0], len(r))), r)
            for i, r in enumerate(runs)]
