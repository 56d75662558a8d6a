"""The frame decoder and encoder on Amaranth's simulator against spikeforge.contract.framing:
the same frames accepted from the same byte stream (random payloads with zeros
and 254/255-byte runs, garbage, truncated, oversized and bad-CRC frames), the same
drop counts; the encoder's output byte-identical to ``Frame.encode``."""

from __future__ import annotations

import random
import struct

import pytest
from amaranth import Module
from amaranth.lib import memory, wiring
from amaranth.sim import Simulator
from spikeforge.contract.framing import (
    MAX_BODY,
    MAX_ENCODED_FRAME,
    MIN_BODY,
    Frame,
    cobs_encode,
    crc16,
)
from spikeforge.contract.framing import FrameDecoder as RefDecoder
from spikeforge.contract.protocol import MAX_PAYLOAD, ErrorCode
from spikeforge.gateware.link import FrameDecoder, FrameEncoder


def random_payload(rng: random.Random, size: int | None = None) -> bytes:
    size = rng.choice([0, 1, 2, 253, 254, 255, 508, rng.randrange(MAX_PAYLOAD + 1)]) \
        if size is None else size
    kind = rng.choice(["random", "zeros", "nonzero", "sparse"])
    if kind == "zeros":
        return bytes(size)
    if kind == "nonzero":
        return bytes(rng.randrange(1, 256) for _ in range(size))
    if kind == "sparse":
        return bytes(0 if rng.random() < 0.1 else rng.randrange(1, 256) for _ in range(size))
    return bytes(rng.randrange(256) for _ in range(size))


def _body(cmd, seq, payload, *, length=None, crc_xor=0):
    head = struct.pack("<BBH", cmd, seq, len(payload) if length is None else length) + payload
    return head + struct.pack("<H", crc16(head) ^ crc_xor)


def random_stream(rng: random.Random, items: int) -> bytes:
    """Good frames mixed with every kind of bad input."""
    out = bytearray()
    for _ in range(items):
        kind = rng.choice(["good"] * 6 + ["garbage", "truncated", "bad_crc", "bad_length",
                                          "short", "empty", "trailing01", "malformed"])
        cmd, seq = rng.randrange(256), rng.randrange(256)
        payload = random_payload(rng, rng.choice([None, rng.randrange(40)]))
        if kind == "good":
            out += Frame(cmd, seq, payload).encode()
        elif kind == "garbage":
            out += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        elif kind == "truncated":
            wire = Frame(cmd, seq, payload).encode()
            out += wire[:rng.randrange(1, len(wire) - 1)] + b"\0"
        elif kind == "bad_crc":
            out += cobs_encode(_body(cmd, seq, payload, crc_xor=rng.randrange(1, 1 << 16)))
            out += b"\0"
        elif kind == "bad_length":
            wrong = (len(payload) + rng.randrange(1, 1000)) % (1 << 16)
            out += cobs_encode(_body(cmd, seq, payload, length=wrong)) + b"\0"
        elif kind == "short":
            out += cobs_encode(bytes(rng.randrange(256) for _ in range(rng.randrange(6)))) + b"\0"
        elif kind == "empty":
            out += b"\0" * rng.randrange(1, 3)
        elif kind == "trailing01":
            body = _body(cmd, seq, bytes(rng.randrange(1, 256) for _ in range(250)))
            wire = cobs_encode(body)
            if len(body) == 254:  # the paper's form: a trailing empty run
                wire += b"\x01"
            out += wire + b"\0"
        elif kind == "malformed":
            wire = bytearray(Frame(cmd, seq, payload).encode()[:-1])
            wire[0] = min(255, len(wire) + rng.randrange(1, 5))  # points past the end
            out += wire + b"\0"
    return bytes(out)


def oversized_stream(rng: random.Random) -> bytes:
    """Frames over the limits: no delimiter for too long, a body over MAX_BODY."""
    long_garbage = bytes(rng.randrange(1, 256) for _ in range(MAX_ENCODED_FRAME + 50))
    body = bytes((i % 2) * rng.randrange(1, 256) for i in range(MAX_BODY + 3))  # zeros
    wire = cobs_encode(body)
    assert len(wire) <= MAX_ENCODED_FRAME
    exact = bytes(rng.randrange(1, 256) for _ in range(MAX_ENCODED_FRAME))
    return (long_garbage + b"\0" + Frame(1, 2, b"ok").encode() + wire + b"\0"
            + exact + b"\0" + exact + b"\x07\0" + Frame(3, 4, random_payload(rng, 1024)).encode())


def run_decoder(stream: bytes, *, idle: float, seed: int):
    dut = FrameDecoder()
    rng = random.Random(seed)
    frames, body = [], bytearray(MAX_BODY + 8)

    async def bench(ctx):
        pos = 0
        quiet = 0
        while quiet < 10:
            send = pos < len(stream) and rng.random() >= idle
            ctx.set(dut.rx.valid, int(send))
            ctx.set(dut.rx.payload, stream[pos] if send else 0)
            if send and ctx.get(dut.rx.ready):
                pos += 1
            if ctx.get(dut.wr_en):
                assert ctx.get(dut.wr_addr) < MAX_BODY  # never past the buffer
                body[ctx.get(dut.wr_addr)] = ctx.get(dut.wr_data)
            ack = ctx.get(dut.frame_valid) and rng.random() < 0.5
            if ack:
                length = ctx.get(dut.length)
                got = bytes(body[:length + 6])
                assert ctx.get(dut.crc) == crc16(got[:-2])
                frame = Frame.from_body(got)
                assert (frame.cmd, frame.seq) == (ctx.get(dut.cmd), ctx.get(dut.seq))
                frames.append(frame)
            ctx.set(dut.frame_ack, int(ack))
            await ctx.tick()
            quiet = quiet + 1 if pos == len(stream) and not ctx.get(dut.frame_valid) else 0
        counts = {name: ctx.get(getattr(dut, name)) for name in
                  ("frames_ok", "drop_bad_crc", "drop_bad_length", "drop_too_large")}
        frames.append(counts)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    counts = frames.pop()
    return frames, counts


def _check_decoder(stream: bytes, seed: int, idle: float):
    ref = RefDecoder()
    want = ref.feed(stream)
    got, counts = run_decoder(stream, idle=idle, seed=seed)
    assert got == want
    assert counts == {"frames_ok": ref.received,
                      "drop_bad_crc": ref.dropped[ErrorCode.BAD_CRC],
                      "drop_bad_length": ref.dropped[ErrorCode.BAD_LENGTH],
                      "drop_too_large": ref.dropped[ErrorCode.TOO_LARGE]}
    return ref


@pytest.mark.parametrize("seed", range(4))
def test_decoder_matches_protocol(seed):
    rng = random.Random(seed)
    stream = random_stream(rng, 40)
    ref = _check_decoder(stream, seed, idle=0.3 if seed % 2 else 0.0)
    assert ref.received >= 5 and sum(ref.dropped.values()) >= 5  # the test covers both


def test_decoder_oversized_frames():
    ref = _check_decoder(oversized_stream(random.Random(7)), 7, idle=0.0)
    assert ref.dropped[ErrorCode.TOO_LARGE] == 3 and ref.received == 2
    assert ref.dropped[ErrorCode.BAD_LENGTH] == 1  # the 1035 garbage bytes: malformed COBS


def test_decoder_length_boundaries():
    """Bodies one byte either side of MIN_BODY and MAX_BODY, and exactly at them."""
    rng = random.Random(11)
    short = bytes(rng.randrange(256) for _ in range(MIN_BODY - 1))
    too_long = bytes(rng.randrange(256) for _ in range(MAX_BODY + 1))
    stream = (cobs_encode(short) + b"\0" + Frame(7, 8, b"").encode()
              + Frame(5, 6, random_payload(rng, MAX_PAYLOAD)).encode()
              + cobs_encode(too_long) + b"\0" + Frame(9, 10, b"end").encode())
    ref = _check_decoder(stream, 11, idle=0.0)
    assert ref.received == 3
    assert ref.dropped[ErrorCode.BAD_LENGTH] == 1 and ref.dropped[ErrorCode.TOO_LARGE] == 1


class _EncoderBench(wiring.Component):
    """The encoder with a buffer the testbench fills through a write port."""

    def __init__(self):
        self.enc = FrameEncoder()
        super().__init__({"we": wiring.In(1), "waddr": wiring.In(11), "wdata": wiring.In(8),
                          "start": wiring.In(1), "length": wiring.In(11),
                          "busy": wiring.Out(1), "tx": wiring.Out(self.enc.tx.signature.flip()
                                                                  .flip())})

    def elaborate(self, platform):
        m = Module()
        m.submodules.enc = enc = self.enc
        m.submodules.mem = mem = memory.Memory(shape=8, depth=MAX_BODY, init=[])
        wr, rd = mem.write_port(), mem.read_port()
        m.d.comb += [wr.en.eq(self.we), wr.addr.eq(self.waddr), wr.data.eq(self.wdata),
                     rd.addr.eq(enc.mem_addr), enc.mem_data.eq(rd.data),
                     enc.start.eq(self.start), enc.length.eq(self.length),
                     self.busy.eq(enc.busy)]
        wiring.connect(m, enc.tx, wiring.flipped(self.tx))
        return m


@pytest.mark.parametrize("seed", range(3))
def test_encoder_matches_protocol(seed):
    rng = random.Random(100 + seed)
    sizes = [0, 1, 248, 249, 250, 251, 252, 500, 1024, rng.randrange(1025)]
    frames = [Frame(rng.randrange(256), rng.randrange(256), random_payload(rng, n))
              for n in sizes]
    frames += [Frame(0, 0, bytes(1024)), Frame(255, 255, b"\xff" * 1024)]
    dut = _EncoderBench()
    got = []

    async def bench(ctx):
        for frame in frames:
            body = frame.to_body()[:-2]
            for i, b in enumerate(body):
                ctx.set(dut.we, 1)
                ctx.set(dut.waddr, i)
                ctx.set(dut.wdata, b)
                await ctx.tick()
            ctx.set(dut.we, 0)
            ctx.set(dut.start, 1)
            ctx.set(dut.length, len(body))
            await ctx.tick()
            ctx.set(dut.start, 0)
            out = bytearray()
            while True:
                ready = rng.random() < 0.7
                ctx.set(dut.tx.ready, int(ready))
                if ready and ctx.get(dut.tx.valid):
                    out.append(ctx.get(dut.tx.payload))
                await ctx.tick()
                if out and out[-1] == 0:
                    break
            for _ in range(3):
                await ctx.tick()
            assert not ctx.get(dut.busy) and not ctx.get(dut.tx.valid)
            got.append(bytes(out))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [f.encode() for f in frames]
