"""Test helpers for the link: drive the byte-stream SoC (or the frame blocks) on
Amaranth's simulator, build requests / check replies with the wire protocol of
spikeforge.contract, and talk to a simulated board over a bare socket
(:class:`RawClient`)."""

from __future__ import annotations

import random
import socket

from amaranth.sim import Simulator
from spikeforge.contract.framing import Frame, FrameDecoder
from spikeforge.contract.info import ENGINE_BASE, REGISTERS
from spikeforge.contract.payloads import pack_read, unpack_read_reply
from spikeforge.contract.protocol import Command, reply_cmd


def run_byte_stream(dut, data: bytes, *, replies: int, idle: float = 0.0,
                    backpressure: float = 0.0, seed: int = 0, max_cycles: int = 400_000,
                    rx=None, tx=None, clocks: dict | None = None):
    """Feed ``data`` into ``dut.rx`` and collect ``dut.tx`` until ``replies`` frames
    (0x00 delimiters) came out and the input is consumed; ``idle`` / ``backpressure``
    are the fractions of clocks with ``rx.valid`` / ``tx.ready`` low.  One testbench
    drives both streams (one process per clock).  Returns ``(out_bytes, cycles)``;
    after the last reply it runs 200 more clocks and checks that nothing else comes.
    ``clocks``, if given, receives the clock in which the input's last byte was
    taken (``"last_in"``) and the one in which the first output byte was
    (``"first_out"``)."""
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
                if pos == len(data) and clocks is not None:
                    clocks["last_in"] = state["cycles"]
            if ready and ctx.get(tx.valid):
                if not out and clocks is not None:
                    clocks["first_out"] = state["cycles"]
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
    from spikeforge.contract.payloads import MAX_WRITE_WORDS, pack_write
    from spikeforge.contract.protocol import Command

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
    from spikeforge.contract.payloads import MAX_READ_WORDS, pack_read
    from spikeforge.contract.protocol import Command

    runs: list[list[int]] = []
    for addr in sorted(set(addresses)):
        if runs and runs[-1][-1] + 1 == addr and len(runs[-1]) < MAX_READ_WORDS:
            runs[-1].append(addr)
        else:
            runs.append([addr])
    return [(Frame(Command.READ, (start_seq + i) % 256, pack_read(r[0], len(r))), r)
            for i, r in enumerate(runs)]


class RawClient:
    """A bare protocol client over a socket (what the host runtime does, minimal)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.dec = FrameDecoder()
        self.pending: list[Frame] = []
        self.sent = FrameDecoder()  # what the device's decoder must make of our bytes

    def open(self, seq: int = 0, nonce: int = 0x5E55) -> int:
        """OPEN a session; the client's decoders take its form from then on (the
        frames it sends must be built with ``session=`` it)."""
        from spikeforge.contract.payloads import pack_open, unpack_open_reply

        reply = self.request(Frame(Command.OPEN, seq, pack_open(nonce)))
        got, session = unpack_open_reply(reply.payload)
        assert got == nonce and reply.cmd == reply_cmd(Command.OPEN) and reply.session == 0
        self.dec.session = self.sent.session = session
        return session

    def send_raw(self, data: bytes) -> None:
        self.sent.feed(data)
        self.sock.sendall(data)

    def replies(self, n: int) -> list[Frame]:
        while len(self.pending) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "the board closed the connection"
            self.pending += self.dec.feed(chunk)
        out, self.pending = self.pending[:n], self.pending[n:]
        return out

    def request(self, frame: Frame) -> Frame:
        self.send_raw(frame.encode())
        (reply,) = self.replies(1)
        assert reply.seq == frame.seq
        return reply

    def ok(self, frame: Frame) -> bytes:
        reply = self.request(frame)
        assert reply.cmd == reply_cmd(frame.cmd), (reply, frame)
        return reply.payload

    def pipelined(self, frames: list[Frame]) -> list[Frame]:
        self.send_raw(b"".join(f.encode() for f in frames))
        replies = self.replies(len(frames))
        for f, r in zip(frames, replies, strict=True):
            assert (r.cmd, r.seq) == (reply_cmd(f.cmd), f.seq), (f, r)
        return replies

    def registers(self, seq: int) -> dict[str, int]:
        words = unpack_read_reply(self.ok(Frame(Command.READ, seq,
                                                pack_read(ENGINE_BASE, len(REGISTERS)))))
        return dict(zip(REGISTERS, words, strict=True))

    def close(self):
        assert not self.pending and self.dec.buffered == 0
        self.sock.close()
