"""The wire protocol's framing (``spikeforge.contract.framing``): CRC, COBS, frames,
the stream decoder, and the cmd / seq rules of ``spikeforge.contract.protocol``.

The CRC and COBS are checked against independent reference implementations written
here from their definitions (a bitwise CRC, the Wikipedia COBS encoder), not
against the module's own code.
"""

from __future__ import annotations

import random
import re
import struct

import pytest
from spikeforge.contract.framing import (
    MAX_BODY,
    MAX_ENCODED_FRAME,
    MIN_BODY,
    Frame,
    FrameDecoder,
    cobs_decode,
    cobs_encode,
    crc16,
)
from spikeforge.contract.protocol import (
    ERROR_REPLY,
    MAX_PAYLOAD,
    Command,
    ErrorCode,
    ProtocolError,
    next_seq,
    reply_cmd,
)

BAD_CRC, BAD_LENGTH, TOO_LARGE = ErrorCode.BAD_CRC, ErrorCode.BAD_LENGTH, ErrorCode.TOO_LARGE


def raises(exc_type, message):
    """``pytest.raises`` that requires exactly ``message``."""
    return pytest.raises(exc_type, match="^" + re.escape(message) + "$")


# ------------------------------------------------------------------------ CRC
def crc_reference(data: bytes) -> int:
    """CRC-16/CCITT-FALSE bit by bit: poly 0x1021, init 0xFFFF, MSB first, xorout 0."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 15) ^ ((byte >> bit) & 1)
            crc = (crc << 1) & 0xFFFF
            if top:
                crc ^= 0x1021
    return crc


def test_crc_check_value():
    assert crc_reference(b"123456789") == 0x29B1
    assert crc16(b"123456789") == 0x29B1
    assert crc16(bytearray(b"123456789")) == crc16(memoryview(b"123456789")) == 0x29B1


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\xff", b"A", b"\x00\x00", b"\xff\xff\xff\xff", bytes(range(256)),
    b"\x01\x80\x00\x05" + bytes(1024)])
def test_crc_vectors(data):
    assert crc16(data) == crc_reference(data)


def test_crc_random():
    rng = random.Random(1)
    for n in range(0, 300, 7):
        data = rng.randbytes(n)
        assert crc16(data) == crc_reference(data)
    assert crc16(b"") == 0xFFFF                 # the init value, nothing shifted in


# ----------------------------------------------------------------------- COBS
def cobs_reference(data: bytes) -> bytes:
    """The Wikipedia reference encoder, transliterated from its C code."""
    out = bytearray([0])
    code_at, code = 0, 1
    for i, byte in enumerate(data):
        if byte:
            out.append(byte)
            code += 1
        if not byte or code == 0xFF:
            out[code_at], code, code_at = code, 1, len(out)
            if not byte or i < len(data) - 1:
                out.append(0)
    if code_at < len(out):
        out[code_at] = code
    return bytes(out)


SEQ_254 = bytes(range(1, 255))                  # 01 02 .. FE
WIKIPEDIA_EXAMPLES = [
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (SEQ_254, b"\xff" + SEQ_254),                                       # 254 non-zero bytes
    (b"\x00" + SEQ_254, b"\x01\xff" + SEQ_254),                         # 00 01 .. FE
    (SEQ_254 + b"\xff", b"\xff" + SEQ_254 + b"\x02\xff"),               # 01 .. FE FF
    (bytes(range(2, 256)) + b"\x00", b"\xff" + bytes(range(2, 256)) + b"\x01\x01"),
    (bytes(range(3, 256)) + b"\x00\x01", b"\xfe" + bytes(range(3, 256)) + b"\x02\x01"),
    (b"", b"\x01"),
]


@pytest.mark.parametrize("data, encoded", WIKIPEDIA_EXAMPLES)
def test_cobs_known_examples(data, encoded):
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data
    assert cobs_reference(data) == encoded


@pytest.mark.parametrize("n", [253, 254, 255, 256, 507, 508, 509, 762])
def test_cobs_run_boundaries(n):
    data = bytes(1 + i % 255 for i in range(n))   # no zero byte
    encoded = cobs_encode(data)
    full, rest = divmod(n, 254)
    # One 0xFF code per full run of 254; a final shorter run has its own code; a data that
    # ends exactly on a full run gets no trailing empty run (01).
    assert len(encoded) == n + full + (1 if rest else 0)
    assert encoded == cobs_reference(data)
    for k in range(full):
        assert encoded[255 * k] == 0xFF
    if rest:
        assert encoded[255 * full] == rest + 1
    assert cobs_decode(encoded) == data


def test_cobs_decoder_accepts_the_trailing_empty_run():
    # The paper's form of 254 non-zero bytes ends with an empty run (01); it decodes the same.
    assert cobs_decode(b"\xff" + SEQ_254 + b"\x01") == SEQ_254
    assert cobs_decode(b"\xff" + SEQ_254 + b"\xff" + SEQ_254 + b"\x01") == SEQ_254 * 2
    # 254 non-zero bytes then a zero: the zero needs its 01, then the empty last run 01.
    assert cobs_encode(SEQ_254 + b"\x00") == b"\xff" + SEQ_254 + b"\x01\x01"


def test_cobs_random_round_trips():
    rng = random.Random(2)
    for n in range(601):
        zero_share = rng.choice([0.0, 0.01, 0.3, 0.9])
        data = bytes(0 if rng.random() < zero_share else rng.randrange(1, 256)
                     for _ in range(n))
        encoded = cobs_encode(data)
        assert 0 not in encoded
        assert len(encoded) <= n + n // 254 + 1
        assert encoded == cobs_reference(data)
        assert cobs_decode(encoded) == data


@pytest.mark.parametrize("encoded, message", [
    (b"", "empty COBS frame (at least one code byte)"),
    (b"\x03\x11\x00\x22", "zero byte inside the COBS frame at offset 2"),
    (b"\x00", "zero byte inside the COBS frame at offset 0"),
    (b"\x05\x11\x22", "COBS code 0x05 at offset 0 points past the end of the 3-byte frame"),
    (b"\x02\x11\x03\x22", "COBS code 0x03 at offset 2 points past the end of the 4-byte frame"),
    (b"\xff" + bytes(range(1, 100)),
     "COBS code 0xff at offset 0 points past the end of the 100-byte frame"),
])
def test_cobs_malformed(encoded, message):
    with raises(ProtocolError, message) as info:
        cobs_decode(encoded)
    assert info.value.code is BAD_LENGTH


# ---------------------------------------------------------------------- frames
def random_payload(rng: random.Random, size: int | None = None) -> bytes:
    if size is None:
        size = rng.choice([0, 1, 2, rng.randrange(3, 64), rng.randrange(64, MAX_PAYLOAD + 1),
                           MAX_PAYLOAD])
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(size)
    if kind == 1:
        return bytes(size)                         # all zeros: every byte is a COBS code
    return bytes(rng.randrange(1, 256) for _ in range(size))   # no zeros: 0xFF runs


def test_frame_layout():
    frame = Frame(Command.WRITE, 7, b"\x01\x00\x02")
    head = bytes([0x02, 0x07, 0x03, 0x00, 0x01, 0x00, 0x02])
    body = head + struct.pack("<H", crc_reference(head))
    assert frame.to_body() == body
    assert frame.encode() == cobs_reference(body) + b"\x00"
    assert Frame.from_body(body) == frame
    assert Frame.decode(frame.encode()[:-1]) == frame
    # Reply and error command codes.
    assert reply_cmd(Command.RUN) == 0x85 and ERROR_REPLY == 0xFF
    assert [reply_cmd(c) for c in Command] == [0x81, 0x82, 0x83, 0x84, 0x85, 0x86]
    with raises(ValueError, "request cmd 127 is out of range 0..126"):
        reply_cmd(0x7F)


def test_sizes():
    assert (MIN_BODY, MAX_BODY, MAX_ENCODED_FRAME) == (6, 1030, 1035)
    worst = Frame(0x7E, 0xFF, bytes(range(1, 256)) * 4 + bytes(range(1, 5)))
    assert len(worst.encode()) - 1 <= MAX_ENCODED_FRAME


@pytest.mark.parametrize("cmd", [*Command, *(reply_cmd(c) for c in Command), ERROR_REPLY,
                                 0x00, 0x42])
def test_frame_round_trips(cmd):
    rng = random.Random(cmd)
    for _ in range(25):
        frame = Frame(cmd, rng.randrange(256), random_payload(rng))
        wire = frame.encode()
        assert wire[-1] == 0 and 0 not in wire[:-1]
        assert len(wire) - 1 <= MAX_ENCODED_FRAME
        assert Frame.decode(wire[:-1]) == frame
        assert FrameDecoder().feed(wire) == [frame]


def test_next_seq():
    assert [next_seq(s) for s in (0, 1, 254, 255)] == [1, 2, 255, 0]
    with raises(ValueError, "seq 256 is out of range 0..255"):
        next_seq(256)


def body_with(cmd=1, seq=2, length=None, payload=b"", crc=None) -> bytes:
    """A frame body with chosen fields; by default consistent and with a good CRC."""
    head = struct.pack("<BBH", cmd, seq, len(payload) if length is None else length) + payload
    return head + struct.pack("<H", crc_reference(head) if crc is None else crc)


CRC_OF_GOOD = crc_reference(bytes([1, 2, 9, 0]) + b"123456789")


@pytest.mark.parametrize("body, code, message", [
    (b"", BAD_LENGTH, "frame body of 0 bytes is shorter than the 6-byte minimum "
                      "(cmd, seq, length, crc)"),
    (b"\x01\x02\x00\x00\x00", BAD_LENGTH, "frame body of 5 bytes is shorter than the 6-byte "
                                          "minimum (cmd, seq, length, crc)"),
    (body_with(payload=bytes(MAX_PAYLOAD + 1)), TOO_LARGE,
     "frame body of 1031 bytes is over the 1030-byte maximum (MAX_PAYLOAD 1024)"),
    (body_with(length=5, payload=b"abc"), BAD_LENGTH,
     "length field 5 disagrees with the 3-byte payload received"),
    (body_with(length=2000, payload=b"abc"), BAD_LENGTH,
     "length field 2000 disagrees with the 3-byte payload received"),
    (body_with(payload=b"abc")[:-1], BAD_LENGTH,            # truncated
     "length field 3 disagrees with the 2-byte payload received"),
    (body_with(payload=b"123456789", crc=0x1234), BAD_CRC,
     f"CRC 0x1234 does not match the computed {CRC_OF_GOOD:#06x}"),
])
def test_frame_rejects(body, code, message):
    with raises(ProtocolError, message) as info:
        Frame.from_body(body)
    assert info.value.code is code
    with raises(ProtocolError, message) as info:
        Frame.decode(cobs_encode(body))
    assert info.value.code is code


def test_frame_decode_rejects_oversized_encoding():
    with raises(ProtocolError, "encoded frame of 1036 bytes is over the 1035-byte maximum") as e:
        Frame.decode(b"\x01" * 1036)
    assert e.value.code is TOO_LARGE


def test_frame_one_flipped_bit_in_the_body():
    rng = random.Random(3)
    frame = Frame(Command.RUN, 200, rng.randbytes(40))
    body = frame.to_body()
    for byte in range(len(body)):
        for bit in range(8):
            bad = bytearray(body)
            bad[byte] ^= 1 << bit
            with pytest.raises(ProtocolError) as info:
                Frame.decode(cobs_encode(bad))
            # A flip in the length field (bytes 2, 3) is a length mismatch; elsewhere the
            # CRC catches it (CRC-16 detects every single-bit error).
            assert info.value.code is (BAD_LENGTH if byte in (2, 3) else BAD_CRC)


@pytest.mark.parametrize("kwargs, message", [
    (dict(cmd=256, seq=0), "cmd 256 is out of range 0..255"),
    (dict(cmd=-1, seq=0), "cmd -1 is out of range 0..255"),
    (dict(cmd="INFO", seq=0), "cmd 'INFO' is not an integer"),
    (dict(cmd=1, seq=300), "seq 300 is out of range 0..255"),
    (dict(cmd=1, seq=0, payload=bytes(1025)), "payload of 1025 bytes is over MAX_PAYLOAD (1024)"),
    (dict(cmd=1, seq=0, payload="text"), "payload 'text' is not bytes"),
    (dict(cmd=1, seq=0, payload=12), "payload 12 is not bytes"),
    (dict(cmd=1, seq=0, payload=[1, 2]), "payload [1, 2] is not bytes"),
])
def test_frame_validation(kwargs, message):
    with raises(ValueError, message):
        Frame(**kwargs)


def test_frame_normalises_fields():
    frame = Frame(Command.READ, 3, bytearray(b"ab"))
    assert type(frame.payload) is bytes and frame.cmd == 3 and frame == Frame(3, 3, b"ab")


# --------------------------------------------------------------- stream decoder
class Stream:
    """Builds a byte stream and what a decoder must make of it."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.data = bytearray()
        self.frames: list[Frame] = []
        self.dropped = {BAD_CRC: 0, BAD_LENGTH: 0, TOO_LARGE: 0}

    def bad(self, wire: bytes, code: ErrorCode):
        self.data += wire
        self.dropped[code] += 1

    def add_random(self):
        rng = self.rng
        frame = Frame(rng.randrange(256), rng.randrange(256), random_payload(rng))
        body = frame.to_body()
        kind = rng.choice(["valid"] * 6 + ["flip", "truncated", "length", "oversized-body",
                                           "oversized-run", "garbage", "delimiters"])
        if kind == "valid":
            self.data += frame.encode()
            self.frames.append(frame)
        elif kind == "flip":                    # one flipped bit anywhere in the body
            bad = bytearray(body)
            at = rng.randrange(len(bad))
            bad[at] ^= 1 << rng.randrange(8)
            self.bad(cobs_encode(bad) + b"\x00", BAD_LENGTH if at in (2, 3) else BAD_CRC)
        elif kind == "truncated":               # the line lost the end of a frame
            wire = frame.encode()
            self.bad(wire[:rng.randrange(1, len(wire) - 1)] + b"\x00", BAD_LENGTH)
        elif kind == "length":                  # good CRC over a wrong length field
            wrong = rng.choice([n for n in (0, 1, len(frame.payload) + 1, 0xFFFF)
                                if n != len(frame.payload)])
            self.bad(cobs_encode(body_with(frame.cmd, frame.seq, wrong, frame.payload))
                     + b"\x00", BAD_LENGTH)
        elif kind == "oversized-body":          # fits the encoded maximum, body too long
            payload = bytes(rng.randrange(MAX_PAYLOAD + 1, MAX_PAYLOAD + 4))
            wire = cobs_encode(body_with(payload=payload))
            assert len(wire) <= MAX_ENCODED_FRAME
            self.bad(wire + b"\x00", TOO_LARGE)
        elif kind == "oversized-run":           # no delimiter for longer than any frame
            run = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1036, 4000)))
            self.bad(run + b"\x00", TOO_LARGE)
        elif kind == "garbage":                 # short pieces, each ending in a zero
            for _ in range(rng.randrange(1, 6)):
                piece = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 7)))
                # <= 6 encoded bytes decode to <= 5 bytes (or fail): always BAD_LENGTH.
                self.bad(piece + b"\x00" * rng.randrange(1, 3), BAD_LENGTH)
        else:                                   # extra delimiters: ignored, not counted
            self.data += b"\x00" * rng.randrange(1, 4)


def feed_in_chunks(decoder: FrameDecoder, data: bytes, rng: random.Random, most: int):
    frames, pos = [], 0
    while pos < len(data):
        size = rng.randrange(0, most + 1)
        frames += decoder.feed(data[pos:pos + size])
        pos += size
        assert decoder.buffered <= MAX_ENCODED_FRAME
    return frames


@pytest.mark.parametrize("seed, items, most", [(10, 250, 1), (11, 400, 7), (12, 400, 300),
                                               (13, 400, 5000)])
def test_decoder_mixed_stream(seed, items, most):
    rng = random.Random(seed)
    stream = Stream(rng)
    for _ in range(items):
        stream.add_random()
    decoder = FrameDecoder()
    frames = feed_in_chunks(decoder, bytes(stream.data), rng, most)
    assert frames == stream.frames
    assert decoder.dropped == stream.dropped
    assert decoder.received == len(stream.frames)
    assert decoder.buffered == 0
    assert min(stream.dropped.values()) > 0      # every kind of bad frame occurred


def test_decoder_all_at_once_and_empty_feeds():
    rng = random.Random(14)
    stream = Stream(rng)
    for _ in range(300):
        stream.add_random()
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(bytes(stream.data)) == stream.frames
    assert decoder.dropped == stream.dropped


def test_decoder_one_flipped_bit_on_the_wire():
    # A flip in the COBS bytes can move, add or remove zeros: the frame is lost (and
    # counted at least once), its neighbours are not, nothing raises.
    rng = random.Random(15)
    before, after = Frame(1, 1, b"before"), Frame(2, 2, b"after")
    for payload in (rng.randbytes(30), bytes(30), bytes(range(1, 255)) + b"\x00\x07"):
        wire = Frame(Command.RUN, 9, payload).encode()[:-1]
        for at in range(len(wire)):
            for bit in range(8):
                bad = bytearray(wire)
                bad[at] ^= 1 << bit
                decoder = FrameDecoder()
                data = before.encode() + bytes(bad) + b"\x00" + after.encode()
                assert feed_in_chunks(decoder, data, rng, 40) == [before, after]
                assert sum(decoder.dropped.values()) >= 1


def test_decoder_random_garbage():
    # Longer random garbage between delimiters: dropped under one of the framing codes.
    rng = random.Random(16)
    frames, data, pieces = [], bytearray(), 0
    for i in range(300):
        frame = Frame(i % 256, i % 256, rng.randbytes(rng.randrange(0, 50)))
        frames.append(frame)
        data += frame.encode()
        garbage = rng.randbytes(rng.randrange(0, 3000)) + b"\x00"
        pieces += sum(1 for _ in filter(None, garbage.split(b"\x00")))
        data += garbage
    decoder = FrameDecoder()
    assert feed_in_chunks(decoder, bytes(data), rng, 500) == frames
    # An oversized piece counts once; every other non-empty piece counts once.
    assert sum(decoder.dropped.values()) == pieces
    assert set(decoder.dropped) == {BAD_CRC, BAD_LENGTH, TOO_LARGE}


def test_decoder_bounded_memory():
    decoder = FrameDecoder()
    good = Frame(Command.INFO, 1).encode()
    for _ in range(50):                          # 50 kB without a delimiter
        assert decoder.feed(b"\x55" * 1000) == []
        assert decoder.buffered <= MAX_ENCODED_FRAME
    assert decoder.dropped[TOO_LARGE] == 1       # one oversized frame, counted once
    assert decoder.feed(b"\x00" + good) == [Frame(Command.INFO, 1)]
    assert decoder.dropped == {BAD_CRC: 0, BAD_LENGTH: 0, TOO_LARGE: 1}


def test_decoder_exactly_the_maximum_is_kept():
    decoder = FrameDecoder()
    decoder.feed(b"\x01" * MAX_ENCODED_FRAME)
    assert decoder.buffered == MAX_ENCODED_FRAME and decoder.dropped[TOO_LARGE] == 0
    decoder.feed(b"\x01")
    assert decoder.buffered == 0 and decoder.dropped[TOO_LARGE] == 1


def test_decoder_garbage_without_delimiter_costs_the_next_frame():
    a, b = Frame(1, 1, b"a"), Frame(1, 2, b"b")
    decoder = FrameDecoder()
    assert decoder.feed(b"\x13\x37" + a.encode() + b.encode()) == [b]
    assert sum(decoder.dropped.values()) == 1
    # A lone delimiter first (what a sender does after a timeout) saves it.
    decoder = FrameDecoder()
    assert decoder.feed(b"\x13\x37" + b"\x00" + a.encode() + b.encode()) == [a, b]
    assert decoder.dropped[BAD_LENGTH] == 1


def test_decoder_passes_unknown_commands():
    # An unknown cmd is not a framing error: the command engine answers it.
    assert FrameDecoder().feed(Frame(0x6A, 5, b"x").encode()) == [Frame(0x6A, 5, b"x")]


def test_session_forms():
    """A frame of session s carries its CRC XOR s: it decodes in that session's form
    only (the frame says which form it matched); the open form is session 0."""
    frame = Frame(Command.READ, 9, b"\x01\x02", session=0x1234)
    body = frame.to_body()
    assert body[:-2] == Frame(Command.READ, 9, b"\x01\x02").to_body()[:-2]
    assert int.from_bytes(body[-2:], "little") == crc16(body[:-2]) ^ 0x1234
    assert Frame.from_body(body, (0x1234, 0)) == frame
    assert Frame.from_body(Frame(Command.READ, 9, b"\x01\x02").to_body(), (0x1234, 0)).session == 0
    for other in ((0,), (0x1235,), (0x1235, 0)):
        with pytest.raises(ProtocolError, match=r"^CRC 0x[0-9a-f]{4} does not match the "
                                                r"computed ") as info:
            Frame.from_body(body, other)
        assert info.value.code == ErrorCode.BAD_CRC
    decoder = FrameDecoder(session=0x1234)
    assert decoder.feed(frame.encode() + Frame(Command.INFO, 1).encode()
                        + Frame(Command.INFO, 2, session=7).encode()) == [
        frame, Frame(Command.INFO, 1)]
    assert decoder.dropped[ErrorCode.BAD_CRC] == 1
    with pytest.raises(ValueError, match=r"^session"):
        Frame(Command.INFO, 1, session=1 << 16)
