"""The wire protocol between the host and the SoC: framing and message formats.

One contract for every transport (serial, the simulated board's TCP port, the
PCIe stream) and every implementation (this host runtime, the gateware frame
decoder and command engine, the simulated board).  All multi-byte integers are
little-endian.  This module is pure Python (stdlib only) and does no I/O.

Framing
-------
A frame on the wire is the COBS encoding of a *body*, followed by one 0x00
delimiter::

    wire:  COBS(body) 0x00  COBS(body) 0x00  ...

A receiver collects bytes up to each 0x00 and decodes them as one frame, so it
resynchronises on the next delimiter after any garbage.  Bytes between two
adjacent delimiters (an empty frame) are ignored without being counted, so a
sender that may have left half a frame on the line (after a reset or a
timeout) sends one lone 0x00 first.  Garbage with no 0x00 after it merges with
the next frame and costs that frame (it is dropped and counted; the host's
timeout and retry recover it).

COBS is Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): the data
is cut at each zero byte and into runs of at most 254 non-zero bytes; each run
is sent as one *code* byte (run length + 1) and the run.  Code 0x01..0xFE means
"a zero byte follows the run" (except after the last run); code 0xFF means a
full run of 254 non-zero bytes with no zero after it.  Examples::

    data                         encoded (delimiter not shown)
    00                           01 01
    00 00                        01 01 01
    11 22 00 33                  03 11 22 02 33
    11 22 33 44                  05 11 22 33 44
    (empty)                      01
    254 non-zero bytes b         FF b
    255 non-zero bytes b c       FF b 02 c

Encoder convention (as in the Wikipedia reference code): when the data ends
exactly after a full 0xFF run, no final empty run (a trailing ``01``) is
emitted.  Decoders accept that trailing ``01`` as well (the paper's form
decodes to the same data), so both forms are valid on the wire.  A frame with
a zero byte inside, or whose code byte points past its end, is malformed.
Encoding adds at most ``n // 254 + 1`` bytes to ``n`` bytes of data.

Frame body (before COBS)
------------------------
::

    offset  size  field    type     meaning
    0       1     cmd      u8       command (request) or reply code
    1       1     seq      u8       sequence number, chosen by the host
    2       2     length   u16 LE   payload length in bytes, 0..MAX_PAYLOAD
    4       len   payload  bytes    command-specific (below)
    4+len   2     crc      u16 LE   CRC-16/CCITT-FALSE over bytes 0 .. 4+len-1

CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, input and output
not reflected, final XOR 0x0000; the CRC of the ASCII bytes ``123456789`` is
0x29B1.  It covers cmd, seq, length and payload (not itself).

Sizes: ``MAX_PAYLOAD`` = 1024 bytes, so a body is 6 .. ``MAX_BODY`` = 1030
bytes and an encoded frame (without its delimiter) at most
``MAX_ENCODED_FRAME`` = 1035 bytes.

A receiver checks a frame in this order and drops it at the first failure,
counting it under an ``ErrorCode``:

    1. the encoded frame is longer than MAX_ENCODED_FRAME      TOO_LARGE
    2. malformed COBS (a code byte pointing past the end)     BAD_LENGTH
    3. body shorter than 6 bytes                              BAD_LENGTH
    4. body longer than MAX_BODY                              TOO_LARGE
    5. the length field disagrees with the bytes received     BAD_LENGTH
    6. the CRC does not match                                 BAD_CRC

A frame that fails these checks is never answered (its cmd and seq cannot be
trusted); the host's timeout and retry recover it.  A streaming receiver that
has collected more than MAX_ENCODED_FRAME bytes without a delimiter discards
them, counts TOO_LARGE once, and skips everything up to the next 0x00, so its
memory stays bounded.  The unknown-command check is not a framing check: a
frame with a good CRC and an unknown cmd gets an UNKNOWN_COMMAND error reply.

Commands and replies
--------------------
::

    cmd    name    request payload                reply (cmd | 0x80) payload
    0x01   INFO    empty                          UTF-8 JSON describing the device
    0x02   WRITE   address u32, count u16,        empty
                   count x word u64
    0x03   READ    address u32, count u16         count x word u64
    0x04   RESET   empty                          empty
    0x05   RUN     steps u16, then per step:      per step: n_out u16,
                   n_events u16,                  n_out x record u64
                   n_events x (index u16,
                               value i16)
    0xFF   ERROR   (reply only)                   code u8, message (UTF-8, may be empty)

A reply has the request's cmd with bit 7 set (``cmd | 0x80``) and the
request's seq; a request cmd has bit 7 clear.  Request cmd 0x7F is reserved
(its reply would be the error reply 0xFF).  Any request can be answered with
an ERROR reply instead of its normal reply.

Sequence numbers are u8 and wrap (``next_seq``: 255 -> 0).  The device answers
a request that repeats the previous request's seq from its cached reply
instead of executing it again (a retried RUN or WRITE is never applied twice).

Payload layouts (``struct`` formats are the ``*_FORMAT`` constants below)::

    WRITE   offset 0: address u32   word address of the first word
            offset 4: count u16     1 .. MAX_WRITE_WORDS (127)
            offset 6: count x u64   the words, in address order
    READ    offset 0: address u32   word address of the first word
            offset 4: count u16     1 .. MAX_READ_WORDS (128)
            reply:    count x u64
    RUN     offset 0: steps u16     1 .. ; the steps are applied in order
            per step: n_events u16, then n_events x (index u16, value i16):
                      the input events of that step (input index, value)
            reply:    per step, in order: n_out u16, then n_out x u64 raw
                      output records (their meaning is the device's, see INFO);
                      the reply has no step count, it holds exactly the
                      request's number of steps
    ERROR   offset 0: code u8 (an ErrorCode), then the message, UTF-8

Addresses count 64-bit words (address + 1 is the next word); the memory map
(config, weights, neuron state, SSM state, counters) is the device's and is
described by INFO.  An access must not run past the 32-bit address space
(address + count <= 2**32).  The INFO reply's JSON is opaque to this module.

Error codes (``ErrorCode``)::

    1  BAD_CRC               frame dropped: CRC mismatch (a drop counter)
    2  BAD_LENGTH            frame dropped: malformed COBS, too short, or the
                             length field disagrees with the bytes (a drop counter)
    3  UNKNOWN_COMMAND       error reply: cmd is not a known request
    4  ADDRESS_OUT_OF_RANGE  error reply: WRITE/READ outside the memory map,
                             or past the 32-bit address space
    5  BAD_PAYLOAD           error reply: the payload does not parse (wrong size,
                             counts that disagree, a RUN input index out of range)
    6  BUSY                  error reply: the device cannot take the request now
    7  TOO_LARGE             frame dropped: over MAX_ENCODED_FRAME / MAX_BODY
                             (a drop counter); or error reply: the reply would
                             exceed MAX_PAYLOAD (a READ of too many words, a RUN
                             with too many outputs)

Python API: ``crc16``, ``cobs_encode`` / ``cobs_decode``, ``Frame`` (``encode``
/ ``decode`` on the wire form, ``to_body`` / ``from_body`` on the body before
COBS), ``FrameDecoder`` (streaming, never raises on garbage), ``next_seq``,
``reply_cmd``, and ``pack_*`` / ``unpack_*`` for each payload.  ``pack_*``
validate their arguments and raise ``ValueError`` naming the bad value;
``unpack_*`` raise ``ProtocolError`` so a device can turn the exception into its
error reply: ``.code`` is BAD_PAYLOAD for a malformed payload (wrong size, counts
that disagree), ADDRESS_OUT_OF_RANGE for an access past the 32-bit address space,
TOO_LARGE for a READ whose reply would not fit (or a payload over MAX_PAYLOAD).
The memory map and the RUN input range are the device's to check.
"""

from __future__ import annotations

import binascii
import operator
import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "BODY_HEADER_FORMAT", "COBS_MAX_RUN", "CRC_FORMAT", "DELIMITER", "ERROR_HEADER_FORMAT",
    "ERROR_REPLY", "MAX_BODY", "MAX_ENCODED_FRAME", "MAX_PAYLOAD", "MAX_READ_WORDS",
    "MAX_WRITE_WORDS", "MIN_BODY", "READ_FORMAT", "REPLY_FLAG", "RUN_COUNT_FORMAT",
    "RUN_EVENT_FORMAT", "RUN_RECORD_FORMAT", "WORD_FORMAT", "WRITE_HEADER_FORMAT",
    "Command", "ErrorCode", "Frame", "FrameDecoder", "ProtocolError",
    "cobs_decode", "cobs_encode", "crc16", "next_seq", "reply_cmd",
    "pack_error", "pack_read", "pack_read_reply", "pack_run", "pack_run_reply", "pack_write",
    "unpack_error", "unpack_read", "unpack_read_reply", "unpack_run", "unpack_run_reply",
    "unpack_write",
]


class Command(IntEnum):
    """Request commands (``cmd`` of a request frame)."""

    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    RESET = 0x04
    RUN = 0x05


class ErrorCode(IntEnum):
    """Codes of the ERROR reply, and the keys of ``FrameDecoder.dropped``."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_COMMAND = 3
    ADDRESS_OUT_OF_RANGE = 4
    BAD_PAYLOAD = 5
    BUSY = 6
    TOO_LARGE = 7


class ProtocolError(Exception):
    """A frame or payload that breaks the protocol; ``.code`` is its ``ErrorCode``."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)


# ------------------------------------------------------------------ constants
DELIMITER = b"\x00"
COBS_MAX_RUN = 254                 # non-zero bytes per COBS run (code 0xFF)
REPLY_FLAG = 0x80                  # reply cmd = request cmd | REPLY_FLAG
ERROR_REPLY = 0xFF                 # cmd of an ERROR reply

MAX_PAYLOAD = 1024
BODY_HEADER_FORMAT = "<BBH"        # cmd, seq, length
CRC_FORMAT = "<H"
MIN_BODY = struct.calcsize(BODY_HEADER_FORMAT) + struct.calcsize(CRC_FORMAT)   # 6
MAX_BODY = MIN_BODY + MAX_PAYLOAD                                              # 1030
MAX_ENCODED_FRAME = MAX_BODY + MAX_BODY // COBS_MAX_RUN + 1                    # 1035

WRITE_HEADER_FORMAT = "<IH"        # address, count (then count x WORD_FORMAT)
READ_FORMAT = "<IH"                # address, count
WORD_FORMAT = "<Q"                 # one memory word
RUN_COUNT_FORMAT = "<H"            # RUN steps; per step n_events; per reply step n_out
RUN_EVENT_FORMAT = "<Hh"           # input index, value
RUN_RECORD_FORMAT = "<Q"           # one raw output record
ERROR_HEADER_FORMAT = "<B"         # code (then the UTF-8 message)

_HEADER = struct.Struct(BODY_HEADER_FORMAT)
_CRC = struct.Struct(CRC_FORMAT)
_WRITE_HEADER = struct.Struct(WRITE_HEADER_FORMAT)
_READ = struct.Struct(READ_FORMAT)
_COUNT = struct.Struct(RUN_COUNT_FORMAT)
_EVENT = struct.Struct(RUN_EVENT_FORMAT)
_ERROR_HEADER = struct.Struct(ERROR_HEADER_FORMAT)
_WORD_SIZE = struct.calcsize(WORD_FORMAT)                                      # 8

MAX_WRITE_WORDS = (MAX_PAYLOAD - _WRITE_HEADER.size) // _WORD_SIZE            # 127
MAX_READ_WORDS = MAX_PAYLOAD // _WORD_SIZE                                     # 128

U8_MAX, U16_MAX, U32_MAX, U64_MAX = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
I16_MIN, I16_MAX = -0x8000, 0x7FFF
_ADDRESS_SPACE = U32_MAX + 1
_ERROR_CODES = frozenset(int(c) for c in ErrorCode)


def _int_in(name: str, value, lowest: int, highest: int) -> int:
    """``value`` as an int in ``lowest..highest``, or ValueError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} {value!r} is not an integer") from None
    if not lowest <= number <= highest:
        raise ValueError(f"{name} {value!r} is out of range {lowest}..{highest}")
    return number


# ------------------------------------------------------------------------ CRC
def crc16(data) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, unreflected, xorout 0) of ``data``."""
    # binascii.crc_hqx is exactly this CRC (MSB first, poly 0x1021) from a given init.
    return binascii.crc_hqx(bytes(data), 0xFFFF)


# ----------------------------------------------------------------------- COBS
def cobs_encode(data) -> bytes:
    """COBS-encode ``data`` (no delimiter); the result contains no zero byte."""
    data = bytes(data)
    out = bytearray()
    parts = data.split(DELIMITER)
    last = len(parts) - 1
    for k, part in enumerate(parts):
        pos = 0
        while len(part) - pos >= COBS_MAX_RUN:
            out.append(0xFF)
            out += part[pos:pos + COBS_MAX_RUN]
            pos += COBS_MAX_RUN
        if k == last and pos and pos == len(part):
            break                  # data ends on a full run: no trailing empty run
        out.append(len(part) - pos + 1)
        out += part[pos:]
    return bytes(out)


def cobs_decode(data) -> bytes:
    """Decode one COBS frame (without its delimiter); ProtocolError(BAD_LENGTH) if malformed."""
    data = bytes(data)
    size = len(data)
    if not size:
        raise ProtocolError(ErrorCode.BAD_LENGTH, "empty COBS frame (at least one code byte)")
    zero = data.find(0)
    if zero >= 0:
        raise ProtocolError(ErrorCode.BAD_LENGTH,
                            f"zero byte inside the COBS frame at offset {zero}")
    out = bytearray()
    pos = 0
    while pos < size:
        code = data[pos]
        end = pos + code
        if end > size:
            raise ProtocolError(ErrorCode.BAD_LENGTH,
                                f"COBS code {code:#04x} at offset {pos} points past the end "
                                f"of the {size}-byte frame")
        out += data[pos + 1:end]
        pos = end
        if code != 0xFF and pos < size:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------------- frames
def next_seq(seq: int) -> int:
    """The sequence number after ``seq`` (u8, wrapping 255 -> 0)."""
    return (_int_in("seq", seq, 0, U8_MAX) + 1) & U8_MAX


def reply_cmd(cmd: int) -> int:
    """The cmd of the reply to request ``cmd`` (``cmd | 0x80``)."""
    return _int_in("request cmd", cmd, 0, REPLY_FLAG - 2) | REPLY_FLAG


@dataclass(frozen=True)
class Frame:
    """One frame: ``cmd`` and ``seq`` (u8 each) and a payload of at most MAX_PAYLOAD bytes.

    ``cmd`` is any u8: a ``Command``, a reply (``cmd | 0x80``), ``ERROR_REPLY``, or an
    unknown command (which the device answers with UNKNOWN_COMMAND).
    """

    cmd: int
    seq: int
    payload: bytes = b""

    def __post_init__(self):
        object.__setattr__(self, "cmd", _int_in("cmd", self.cmd, 0, U8_MAX))
        object.__setattr__(self, "seq", _int_in("seq", self.seq, 0, U8_MAX))
        if not isinstance(self.payload, (bytes, bytearray, memoryview)):
            raise ValueError(f"payload {self.payload!r} is not bytes")
        payload = bytes(self.payload)
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(payload)} bytes is over MAX_PAYLOAD "
                             f"({MAX_PAYLOAD})")
        object.__setattr__(self, "payload", payload)

    def to_body(self) -> bytes:
        """The frame body before COBS: cmd, seq, length, payload, crc."""
        head = _HEADER.pack(self.cmd, self.seq, len(self.payload)) + self.payload
        return head + _CRC.pack(crc16(head))

    def encode(self) -> bytes:
        """The frame as sent on the wire: COBS(body) followed by the 0x00 delimiter."""
        return cobs_encode(self.to_body()) + DELIMITER

    @classmethod
    def from_body(cls, body) -> Frame:
        """Parse a body (before COBS); ProtocolError with the ErrorCode of the first failure."""
        body = bytes(body)
        size = len(body)
        if size < MIN_BODY:
            raise ProtocolError(ErrorCode.BAD_LENGTH,
                                f"frame body of {size} bytes is shorter than the "
                                f"{MIN_BODY}-byte minimum (cmd, seq, length, crc)")
        if size > MAX_BODY:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"frame body of {size} bytes is over the {MAX_BODY}-byte "
                                f"maximum (MAX_PAYLOAD {MAX_PAYLOAD})")
        cmd, seq, length = _HEADER.unpack_from(body)
        if length != size - MIN_BODY:
            raise ProtocolError(ErrorCode.BAD_LENGTH,
                                f"length field {length} disagrees with the "
                                f"{size - MIN_BODY}-byte payload received")
        (got,) = _CRC.unpack_from(body, size - _CRC.size)
        want = crc16(body[:size - _CRC.size])
        if got != want:
            raise ProtocolError(ErrorCode.BAD_CRC,
                                f"CRC {got:#06x} does not match the computed {want:#06x}")
        return cls(cmd, seq, body[_HEADER.size:size - _CRC.size])

    @classmethod
    def decode(cls, data) -> Frame:
        """Parse one wire frame without its delimiter (COBS-encoded bytes)."""
        data = bytes(data)
        if len(data) > MAX_ENCODED_FRAME:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"encoded frame of {len(data)} bytes is over the "
                                f"{MAX_ENCODED_FRAME}-byte maximum")
        return cls.from_body(cobs_decode(data))


class FrameDecoder:
    """Turns a byte stream, in any chunking, into valid frames; never raises on garbage.

    ``dropped`` counts the bad frames per ``ErrorCode`` (BAD_CRC, BAD_LENGTH and
    TOO_LARGE, all present from the start); ``received`` counts the valid ones.
    Memory stays bounded: at most MAX_ENCODED_FRAME bytes are buffered.
    """

    def __init__(self):
        self.dropped: dict[ErrorCode, int] = {
            ErrorCode.BAD_CRC: 0, ErrorCode.BAD_LENGTH: 0, ErrorCode.TOO_LARGE: 0}
        self.received = 0
        self._buffer = bytearray()
        self._discarding = False   # an oversized frame: skip up to the next delimiter

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held so far."""
        return len(self._buffer)

    def feed(self, data) -> list[Frame]:
        """Take the next bytes of the stream; return the frames they complete, in order."""
        data = bytes(data)
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._take(data, start, len(data))
                return frames
            self._take(data, start, end)
            self._finish(frames)
            start = end + 1

    def _take(self, data: bytes, start: int, end: int) -> None:
        if self._discarding or start == end:
            return
        if len(self._buffer) + end - start > MAX_ENCODED_FRAME:
            self._buffer.clear()
            self._discarding = True
            self.dropped[ErrorCode.TOO_LARGE] += 1
            return
        self._buffer += data[start:end]

    def _finish(self, frames: list[Frame]) -> None:
        if self._discarding:
            self._discarding = False
            return
        if not self._buffer:
            return                 # an empty frame (extra delimiter): ignored
        try:
            frames.append(Frame.decode(self._buffer))
            self.received += 1
        except ProtocolError as exc:
            self.dropped[exc.code] = self.dropped.get(exc.code, 0) + 1
        self._buffer.clear()


# -------------------------------------------------------------------- payloads
def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_PAYLOAD, message)


def _check_size(name: str, payload) -> bytes:
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{name} payload of {len(payload)} bytes is "
                                                 f"over MAX_PAYLOAD ({MAX_PAYLOAD})")
    return payload


def _check_span(address: int, count: int, error) -> None:
    if address + count > _ADDRESS_SPACE:
        raise error(f"address {address} + {count} words runs past the end of the 32-bit "
                    f"address space")


def _words(name: str, words, most: int) -> list[int]:
    words = list(words)
    if not words:
        raise ValueError(f"{name} is empty (at least 1 word)")
    if len(words) > most:
        raise ValueError(f"{len(words)} {name} are more than the {most} that fit one payload")
    return [_int_in(f"{name}[{i}]", w, 0, U64_MAX) for i, w in enumerate(words)]


def pack_write(address: int, words) -> bytes:
    """WRITE payload: ``words`` (u64 each, 1..MAX_WRITE_WORDS) from word ``address`` on."""
    address = _int_in("address", address, 0, U32_MAX)
    words = _words("words", words, MAX_WRITE_WORDS)
    _check_span(address, len(words), ValueError)
    return _WRITE_HEADER.pack(address, len(words)) + struct.pack(f"<{len(words)}Q", *words)


def unpack_write(payload) -> tuple[int, list[int]]:
    """``(address, words)`` of a WRITE payload."""
    payload = _check_size("WRITE", payload)
    if len(payload) < _WRITE_HEADER.size:
        raise _bad(f"WRITE payload of {len(payload)} bytes is shorter than its "
                   f"{_WRITE_HEADER.size}-byte header")
    address, count = _WRITE_HEADER.unpack_from(payload)
    if count == 0:
        raise _bad("WRITE count is 0 (at least 1 word)")
    want = _WRITE_HEADER.size + _WORD_SIZE * count
    if len(payload) != want:
        raise _bad(f"WRITE payload of {len(payload)} bytes disagrees with its count {count} "
                   f"({want} bytes expected)")
    _check_span(address, count, lambda m: ProtocolError(ErrorCode.ADDRESS_OUT_OF_RANGE, m))
    return address, list(struct.unpack_from(f"<{count}Q", payload, _WRITE_HEADER.size))


def pack_read(address: int, count: int) -> bytes:
    """READ payload: ``count`` words (1..MAX_READ_WORDS) from word ``address`` on."""
    address = _int_in("address", address, 0, U32_MAX)
    count = _int_in("count", count, 1, MAX_READ_WORDS)
    _check_span(address, count, ValueError)
    return _READ.pack(address, count)


def unpack_read(payload) -> tuple[int, int]:
    """``(address, count)`` of a READ payload."""
    payload = _check_size("READ", payload)
    if len(payload) != _READ.size:
        raise _bad(f"READ payload of {len(payload)} bytes is not {_READ.size} bytes "
                   f"(address u32, count u16)")
    address, count = _READ.unpack(payload)
    if count == 0:
        raise _bad("READ count is 0 (at least 1 word)")
    if count > MAX_READ_WORDS:
        raise ProtocolError(ErrorCode.TOO_LARGE,
                            f"READ count {count} needs a {_WORD_SIZE * count}-byte reply, over "
                            f"MAX_PAYLOAD ({MAX_PAYLOAD})")
    _check_span(address, count, lambda m: ProtocolError(ErrorCode.ADDRESS_OUT_OF_RANGE, m))
    return address, count


def pack_read_reply(words) -> bytes:
    """READ reply payload: the words read (u64 each, 1..MAX_READ_WORDS)."""
    words = _words("words", words, MAX_READ_WORDS)
    return struct.pack(f"<{len(words)}Q", *words)


def unpack_read_reply(payload, count: int | None = None) -> list[int]:
    """The words of a READ reply; ``count``, if given, is the request's word count."""
    payload = _check_size("READ reply", payload)
    if not payload or len(payload) % _WORD_SIZE:
        raise _bad(f"READ reply of {len(payload)} bytes is not a whole, non-zero number of "
                   f"{_WORD_SIZE}-byte words")
    got = len(payload) // _WORD_SIZE
    if count is not None and got != count:
        raise _bad(f"READ reply has {got} words, the request asked for {count}")
    return list(struct.unpack(f"<{got}Q", payload))


def pack_run(steps) -> bytes:
    """RUN payload from ``steps``: per step a list of input events ``(index, value)``."""
    steps = [list(step) for step in steps]
    if not steps:
        raise ValueError("steps is empty (at least 1 step)")
    size = _COUNT.size + sum(_COUNT.size + _EVENT.size * len(step) for step in steps)
    if size > MAX_PAYLOAD:
        raise ValueError(f"{len(steps)} steps with {sum(map(len, steps))} events need a "
                         f"{size}-byte RUN payload, over MAX_PAYLOAD ({MAX_PAYLOAD})")
    out = bytearray(_COUNT.pack(len(steps)))
    for s, step in enumerate(steps):
        out += _COUNT.pack(len(step))
        for e, event in enumerate(step):
            try:
                index, value = event
            except (TypeError, ValueError):
                raise ValueError(f"steps[{s}][{e}] {event!r} is not an (index, value) "
                                 f"pair") from None
            out += _EVENT.pack(_int_in(f"steps[{s}][{e}] index", index, 0, U16_MAX),
                               _int_in(f"steps[{s}][{e}] value", value, I16_MIN, I16_MAX))
    return bytes(out)


def unpack_run(payload) -> list[list[tuple[int, int]]]:
    """The steps of a RUN payload: per step a list of ``(index, value)`` events."""
    payload = _check_size("RUN", payload)
    if len(payload) < _COUNT.size:
        raise _bad(f"RUN payload of {len(payload)} bytes is shorter than its "
                   f"{_COUNT.size}-byte step count")
    (count,) = _COUNT.unpack_from(payload)
    if count == 0:
        raise _bad("RUN step count is 0 (at least 1 step)")
    steps = []
    pos = _COUNT.size
    for s in range(count):
        if pos + _COUNT.size > len(payload):
            raise _bad(f"RUN payload of {len(payload)} bytes ends before step {s} of {count}")
        (n,) = _COUNT.unpack_from(payload, pos)
        pos += _COUNT.size
        end = pos + _EVENT.size * n
        if end > len(payload):
            raise _bad(f"RUN payload of {len(payload)} bytes ends inside step {s}'s {n} events")
        steps.append(list(_EVENT.iter_unpack(payload[pos:end])))
        pos = end
    if pos != len(payload):
        raise _bad(f"RUN payload has {len(payload) - pos} bytes after its {count} steps")
    return steps


def pack_run_reply(outputs) -> bytes:
    """RUN reply payload from ``outputs``: per step a list of raw output records (u64)."""
    outputs = [list(step) for step in outputs]
    if not outputs:
        raise ValueError("outputs is empty (at least 1 step)")
    size = sum(_COUNT.size + _WORD_SIZE * len(step) for step in outputs)
    if size > MAX_PAYLOAD:
        raise ValueError(f"{len(outputs)} steps with {sum(map(len, outputs))} records need a "
                         f"{size}-byte RUN reply, over MAX_PAYLOAD ({MAX_PAYLOAD})")
    out = bytearray()
    for s, step in enumerate(outputs):
        records = [_int_in(f"outputs[{s}][{r}]", v, 0, U64_MAX) for r, v in enumerate(step)]
        out += _COUNT.pack(len(records)) + struct.pack(f"<{len(records)}Q", *records)
    return bytes(out)


def unpack_run_reply(payload, steps: int | None = None) -> list[list[int]]:
    """Per step the raw output records of a RUN reply; ``steps``, if given, is the request's."""
    payload = _check_size("RUN reply", payload)
    if not payload:
        raise _bad("RUN reply is empty (at least 1 step)")
    outputs = []
    pos = 0
    while pos < len(payload):
        s = len(outputs)
        if pos + _COUNT.size > len(payload):
            raise _bad(f"RUN reply of {len(payload)} bytes ends inside the count of step {s}")
        (n,) = _COUNT.unpack_from(payload, pos)
        pos += _COUNT.size
        end = pos + _WORD_SIZE * n
        if end > len(payload):
            raise _bad(f"RUN reply of {len(payload)} bytes ends inside step {s}'s {n} records")
        outputs.append(list(struct.unpack_from(f"<{n}Q", payload, pos)))
        pos = end
    if steps is not None and len(outputs) != steps:
        raise _bad(f"RUN reply has {len(outputs)} steps, the request had {steps}")
    return outputs


def pack_error(code: ErrorCode, message: str = "") -> bytes:
    """ERROR reply payload: ``code`` (an ErrorCode) and a UTF-8 ``message``."""
    try:
        code = ErrorCode(operator.index(code))
    except (TypeError, ValueError):
        raise ValueError(f"error code {code!r} is not an ErrorCode") from None
    if not isinstance(message, str):
        raise ValueError(f"error message {message!r} is not a str")
    text = message.encode("utf-8")
    if _ERROR_HEADER.size + len(text) > MAX_PAYLOAD:
        raise ValueError(f"error message of {len(text)} UTF-8 bytes is over the "
                         f"{MAX_PAYLOAD - _ERROR_HEADER.size}-byte maximum")
    return _ERROR_HEADER.pack(code) + text


def unpack_error(payload) -> tuple[int, str]:
    """``(code, message)`` of an ERROR reply; ``code`` is an ErrorCode when it is a known one."""
    payload = _check_size("ERROR", payload)
    if not payload:
        raise _bad("ERROR payload is empty (no error code)")
    (code,) = _ERROR_HEADER.unpack_from(payload)
    try:
        message = payload[_ERROR_HEADER.size:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = _ERROR_HEADER.size + exc.start
        raise _bad(f"ERROR message is not UTF-8 (byte {payload[offset]:#04x} at offset "
                   f"{offset})") from None
    return (ErrorCode(code) if code in _ERROR_CODES else code), message
