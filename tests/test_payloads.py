"""The wire protocol's payloads (``spikeforge.contract.payloads``): round trips, the
checks of ``pack_*`` (ValueError) and ``unpack_*`` (ProtocolError with its code), and
payloads carried in frames."""

from __future__ import annotations

import random
import re
import struct

import pytest
from spikeforge.contract import payloads as P
from spikeforge.contract.framing import Frame, FrameDecoder
from spikeforge.contract.protocol import (
    ERROR_REPLY,
    MAX_PAYLOAD,
    Command,
    ErrorCode,
    ProtocolError,
)

TOO_LARGE, BAD_PAYLOAD = ErrorCode.TOO_LARGE, ErrorCode.BAD_PAYLOAD


def raises(exc_type, message):
    """``pytest.raises`` that requires exactly ``message``."""
    return pytest.raises(exc_type, match="^" + re.escape(message) + "$")


def test_word_counts():
    assert (P.MAX_WRITE_WORDS, P.MAX_READ_WORDS) == (127, 128)


def test_write_round_trips():
    rng = random.Random(20)
    for count in (1, 2, 64, 127):
        words = [rng.randrange(2 ** 64) for _ in range(count)] + [0, 2 ** 64 - 1][:127 - count]
        address = rng.randrange(2 ** 32 - len(words))
        payload = P.pack_write(address, words)
        assert payload[:6] == struct.pack("<IH", address, len(words))
        assert len(payload) == 6 + 8 * len(words) <= MAX_PAYLOAD
        assert P.unpack_write(payload) == (address, words)
    assert P.unpack_write(P.pack_write(2 ** 32 - 1, [5])) == (2 ** 32 - 1, [5])


def test_read_round_trips():
    for address, count in ((0, 1), (123456, 128), (2 ** 32 - 128, 128)):
        payload = P.pack_read(address, count)
        assert payload == struct.pack("<IH", address, count)
        assert P.unpack_read(payload) == (address, count)
    words = list(range(128))
    assert P.unpack_read_reply(P.pack_read_reply(words), 128) == words
    assert P.unpack_read_reply(P.pack_read_reply([2 ** 64 - 1])) == [2 ** 64 - 1]


def test_run_round_trips():
    rng = random.Random(21)
    for _ in range(200):
        steps = [[(rng.randrange(65536), rng.randrange(-32768, 32768))
                  for _ in range(rng.randrange(0, 10))] for _ in range(rng.randrange(1, 20))]
        payload = P.pack_run(steps)
        assert P.unpack_run(payload) == steps
    assert P.pack_run([[(1, -1)], []]) == bytes.fromhex("0200" "0100" "0100" "ffff" "0000")
    assert P.unpack_run(P.pack_run([[]] * 511)) == [[]] * 511            # 1024 bytes
    assert P.unpack_run(P.pack_run([[(0, 0)] * 255])) == [[(0, 0)] * 255]  # 1024 bytes


def test_run_reply_round_trips():
    rng = random.Random(22)
    for _ in range(200):
        outputs = [[rng.randrange(2 ** 64) for _ in range(rng.randrange(0, 8))]
                   for _ in range(rng.randrange(1, 12))]
        payload = P.pack_run_reply(outputs)
        assert P.unpack_run_reply(payload, len(outputs)) == outputs
    assert P.pack_run_reply([[7], []]) == bytes.fromhex("0100" "0700000000000000" "0000")
    assert P.unpack_run_reply(P.pack_run_reply([[]] * 512)) == [[]] * 512


def test_error_round_trips():
    for code in ErrorCode:
        for message in ("", "address 0x1234 out of range", "µs ✓", "x" * 1023):
            payload = P.pack_error(code, message)
            assert payload[0] == code
            got_code, got_message = P.unpack_error(payload)
            assert got_code is code and got_message == message
    assert P.unpack_error(b"\x63oops") == (99, "oops")              # an unknown code survives


def test_payloads_travel_in_frames():
    cases = [
        (Command.WRITE, P.pack_write(16, [1, 2, 3]), P.unpack_write, (16, [1, 2, 3])),
        (Command.READ, P.pack_read(16, 3), P.unpack_read, (16, 3)),
        (Command.RUN, P.pack_run([[(3, -7)], []]), P.unpack_run, [[(3, -7)], []]),
        (ERROR_REPLY, P.pack_error(ErrorCode.BUSY, "busy"), P.unpack_error,
         (ErrorCode.BUSY, "busy")),
    ]
    for seq, (cmd, payload, unpack, value) in enumerate(cases):
        [frame] = FrameDecoder().feed(Frame(cmd, seq, payload).encode())
        assert unpack(frame.payload) == value


U64_MAX = 2 ** 64 - 1


@pytest.mark.parametrize("call, message", [
    (lambda: P.pack_write(-1, [1]), "address -1 is out of range 0..4294967295"),
    (lambda: P.pack_write(2 ** 32, [1]), "address 4294967296 is out of range 0..4294967295"),
    (lambda: P.pack_write(1.5, [1]), "address 1.5 is not an integer"),
    (lambda: P.pack_write(0, []), "words is empty (at least 1 word)"),
    (lambda: P.pack_write(0, [0] * 128), "128 words are more than the 127 that fit one payload"),
    (lambda: P.pack_write(0, [1, -1]), "words[1] -1 is out of range 0..18446744073709551615"),
    (lambda: P.pack_write(0, [U64_MAX + 1]),
     "words[0] 18446744073709551616 is out of range 0..18446744073709551615"),
    (lambda: P.pack_write(0, ["1"]), "words[0] '1' is not an integer"),
    (lambda: P.pack_write(2 ** 32 - 1, [1, 2]),
     "address 4294967295 + 2 words runs past the end of the 32-bit address space"),
    (lambda: P.pack_read(-5, 1), "address -5 is out of range 0..4294967295"),
    (lambda: P.pack_read(0, 0), "count 0 is out of range 1..128"),
    (lambda: P.pack_read(0, 129), "count 129 is out of range 1..128"),
    (lambda: P.pack_read(2 ** 32 - 2, 3),
     "address 4294967294 + 3 words runs past the end of the 32-bit address space"),
    (lambda: P.pack_read_reply([]), "words is empty (at least 1 word)"),
    (lambda: P.pack_read_reply([0] * 129), "129 words are more than the 128 that fit one payload"),
    (lambda: P.pack_read_reply([None]), "words[0] None is not an integer"),
    (lambda: P.pack_run([]), "steps is empty (at least 1 step)"),
    (lambda: P.pack_run([[(0, 0)] * 256]),
     "1 steps with 256 events need a 1028-byte RUN payload, over MAX_PAYLOAD (1024)"),
    (lambda: P.pack_run([[]] * 512),
     "512 steps with 0 events need a 1026-byte RUN payload, over MAX_PAYLOAD (1024)"),
    (lambda: P.pack_run([[], [(65536, 0)]]), "steps[1][0] index 65536 is out of range 0..65535"),
    (lambda: P.pack_run([[(-1, 0)]]), "steps[0][0] index -1 is out of range 0..65535"),
    (lambda: P.pack_run([[(0, 1), (2, 32768)]]),
     "steps[0][1] value 32768 is out of range -32768..32767"),
    (lambda: P.pack_run([[(0, -32769)]]), "steps[0][0] value -32769 is out of range -32768..32767"),
    (lambda: P.pack_run([[(1, 2, 3)]]), "steps[0][0] (1, 2, 3) is not an (index, value) pair"),
    (lambda: P.pack_run([[5]]), "steps[0][0] 5 is not an (index, value) pair"),
    (lambda: P.pack_run_reply([]), "outputs is empty (at least 1 step)"),
    (lambda: P.pack_run_reply([[0] * 128]),
     "1 steps with 128 records need a 1026-byte RUN reply, over MAX_PAYLOAD (1024)"),
    (lambda: P.pack_run_reply([[1], [-1]]), "outputs[1][0] -1 is out of range "
                                            "0..18446744073709551615"),
    (lambda: P.pack_error(0, "x"), "error code 0 is not an ErrorCode"),
    (lambda: P.pack_error(10, "x"), "error code 10 is not an ErrorCode"),
    (lambda: P.pack_error("BUSY", "x"), "error code 'BUSY' is not an ErrorCode"),
    (lambda: P.pack_error(ErrorCode.BUSY, b"x"), "error message b'x' is not a str"),
    (lambda: P.pack_error(ErrorCode.BUSY, "é" * 512),
     "error message of 1024 UTF-8 bytes is over the 1023-byte maximum"),
])
def test_pack_validation(call, message):
    with raises(ValueError, message):
        call()


def test_pack_accepts_index_types():
    class Index:                                # numpy integers behave like this
        def __index__(self):
            return 9
    assert P.unpack_write(P.pack_write(Index(), [Index()])) == (9, [9])
    assert P.pack_error(5) == b"\x05"


WRITE_2 = struct.pack("<IH2Q", 16, 2, 1, 2)
RUN_OK = bytes.fromhex("0200" "0100" "0100ffff" "0000")


@pytest.mark.parametrize("unpack, payload, code, message", [
    (P.unpack_write, b"\x00" * 5, BAD_PAYLOAD,
     "WRITE payload of 5 bytes is shorter than its 6-byte header"),
    (P.unpack_write, struct.pack("<IH", 0, 0), BAD_PAYLOAD, "WRITE count is 0 (at least 1 word)"),
    (P.unpack_write, WRITE_2[:-1], BAD_PAYLOAD,
     "WRITE payload of 21 bytes disagrees with its count 2 (22 bytes expected)"),
    (P.unpack_write, WRITE_2 + b"\x00", BAD_PAYLOAD,
     "WRITE payload of 23 bytes disagrees with its count 2 (22 bytes expected)"),
    (P.unpack_write, struct.pack("<IH2Q", 2 ** 32 - 1, 2, 1, 2), ErrorCode.ADDRESS_OUT_OF_RANGE,
     "address 4294967295 + 2 words runs past the end of the 32-bit address space"),
    (P.unpack_write, bytes(1025), TOO_LARGE, "WRITE payload of 1025 bytes is over MAX_PAYLOAD "
                                             "(1024)"),
    (P.unpack_read, b"\x00" * 5, BAD_PAYLOAD,
     "READ payload of 5 bytes is not 6 bytes (address u32, count u16)"),
    (P.unpack_read, b"\x00" * 7, BAD_PAYLOAD,
     "READ payload of 7 bytes is not 6 bytes (address u32, count u16)"),
    (P.unpack_read, struct.pack("<IH", 4, 0), BAD_PAYLOAD, "READ count is 0 (at least 1 word)"),
    (P.unpack_read, struct.pack("<IH", 4, 129), TOO_LARGE,
     "READ count 129 needs a 1032-byte reply, over MAX_PAYLOAD (1024)"),
    (P.unpack_read, struct.pack("<IH", 2 ** 32 - 1, 2), ErrorCode.ADDRESS_OUT_OF_RANGE,
     "address 4294967295 + 2 words runs past the end of the 32-bit address space"),
    (P.unpack_read_reply, b"", BAD_PAYLOAD,
     "READ reply of 0 bytes is not a whole, non-zero number of 8-byte words"),
    (P.unpack_read_reply, bytes(12), BAD_PAYLOAD,
     "READ reply of 12 bytes is not a whole, non-zero number of 8-byte words"),
    (lambda p: P.unpack_read_reply(p, 3), bytes(16), BAD_PAYLOAD,
     "READ reply has 2 words, the request asked for 3"),
    (P.unpack_run, b"\x01", BAD_PAYLOAD,
     "RUN payload of 1 bytes is shorter than its 2-byte step count"),
    (P.unpack_run, b"\x00\x00", BAD_PAYLOAD, "RUN step count is 0 (at least 1 step)"),
    (P.unpack_run, RUN_OK[:3], BAD_PAYLOAD, "RUN payload of 3 bytes ends before step 0 of 2"),
    (P.unpack_run, RUN_OK[:6], BAD_PAYLOAD, "RUN payload of 6 bytes ends inside step 0's 1 events"),
    (P.unpack_run, RUN_OK[:8], BAD_PAYLOAD, "RUN payload of 8 bytes ends before step 1 of 2"),
    (P.unpack_run, RUN_OK + b"\x00", BAD_PAYLOAD, "RUN payload has 1 bytes after its 2 steps"),
    (P.unpack_run, b"\x01\x00" + bytes(1024), TOO_LARGE,
     "RUN payload of 1026 bytes is over MAX_PAYLOAD (1024)"),
    (P.unpack_run_reply, b"", BAD_PAYLOAD, "RUN reply is empty (at least 1 step)"),
    (P.unpack_run_reply, b"\x00\x00\x01", BAD_PAYLOAD,
     "RUN reply of 3 bytes ends inside the count of step 1"),
    (P.unpack_run_reply, b"\x02\x00" + bytes(15), BAD_PAYLOAD,
     "RUN reply of 17 bytes ends inside step 0's 2 records"),
    (lambda p: P.unpack_run_reply(p, 3), bytes(4), BAD_PAYLOAD,
     "RUN reply has 2 steps, the request had 3"),
    (P.unpack_error, b"", BAD_PAYLOAD, "ERROR payload is empty (no error code)"),
    (P.unpack_error, b"\x05ok\xff", BAD_PAYLOAD,
     "ERROR message is not UTF-8 (byte 0xff at offset 3)"),
])
def test_unpack_rejects(unpack, payload, code, message):
    with raises(ProtocolError, message) as info:
        unpack(payload)
    assert info.value.code is code


def test_protocol_error_carries_its_code():
    exc = ProtocolError(3, "nope")
    assert exc.code is ErrorCode.UNKNOWN_COMMAND and str(exc) == "nope"
