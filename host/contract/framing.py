"""Framing of the wire protocol (:mod:`.protocol`): CRC, COBS, frames, stream decoding.

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
    4       len   payload  bytes    command-specific (:mod:`.payloads`)
    4+len   2     crc      u16 LE   CRC-16/CCITT-FALSE over bytes 0 .. 4+len-1

CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, input and output
not reflected, final XOR 0x0000; the CRC of the ASCII bytes ``123456789`` is
0x29B1.  It covers cmd, seq, length and payload (not itself).  A frame of
session ``s`` (:mod:`.protocol`, Sessions) carries ``crc ^ s``; session 0, the
*open form*, is the plain CRC.  Two sessions' forms of one body differ in every
case, so a frame checked against the wrong session fails as BAD_CRC.

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

Python API: ``crc16``, ``cobs_encode`` / ``cobs_decode``, ``Frame`` (``encode``
/ ``decode`` on the wire form, ``to_body`` / ``from_body`` on the body before
COBS; a bad frame raises ``ProtocolError`` with the ``ErrorCode`` of its first
failed check) and ``FrameDecoder`` (streaming, never raises on garbage).
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

from .protocol import MAX_PAYLOAD, U8_MAX, U16_MAX, ErrorCode, ProtocolError, checked_int

__all__ = [
    "BODY_HEADER_FORMAT", "COBS_MAX_RUN", "CRC_FORMAT", "DELIMITER", "MAX_BODY",
    "MAX_ENCODED_FRAME", "MIN_BODY", "Frame", "FrameDecoder", "cobs_decode", "cobs_encode",
    "crc16",
]

DELIMITER = b"\x00"
COBS_MAX_RUN = 254                 # non-zero bytes per COBS run (code 0xFF)
BODY_HEADER_FORMAT = "<BBH"        # cmd, seq, length
CRC_FORMAT = "<H"
MIN_BODY = struct.calcsize(BODY_HEADER_FORMAT) + struct.calcsize(CRC_FORMAT)   # 6
MAX_BODY = MIN_BODY + MAX_PAYLOAD                                              # 1030
MAX_ENCODED_FRAME = MAX_BODY + MAX_BODY // COBS_MAX_RUN + 1                    # 1035

_HEADER = struct.Struct(BODY_HEADER_FORMAT)
_CRC = struct.Struct(CRC_FORMAT)


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
@dataclass(frozen=True)
class Frame:
    """One frame: ``cmd`` and ``seq`` (u8 each) and a payload of at most MAX_PAYLOAD bytes,
    in the form of ``session`` (u16, 0: the open form; its CRC is XOR the session).

    ``cmd`` is any u8: a ``Command``, a reply (``cmd | 0x80``), ``ERROR_REPLY``, or an
    unknown command (which the device answers with UNKNOWN_COMMAND).
    """

    cmd: int
    seq: int
    payload: bytes = b""
    session: int = 0

    def __post_init__(self):
        object.__setattr__(self, "cmd", checked_int("cmd", self.cmd, 0, U8_MAX))
        object.__setattr__(self, "seq", checked_int("seq", self.seq, 0, U8_MAX))
        object.__setattr__(self, "session", checked_int("session", self.session, 0, U16_MAX))
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
        return head + _CRC.pack(crc16(head) ^ self.session)

    def encode(self) -> bytes:
        """The frame as sent on the wire: COBS(body) followed by the 0x00 delimiter."""
        return cobs_encode(self.to_body()) + DELIMITER

    @classmethod
    def from_body(cls, body, sessions=(0,)) -> Frame:
        """Parse a body (before COBS) in the form of one of ``sessions`` (the first that
        checks is the frame's ``session``); ProtocolError with the ErrorCode of the
        first failure."""
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
        for session in sessions:
            if got == want ^ session:
                return cls(cmd, seq, body[_HEADER.size:size - _CRC.size], session)
        forms = " or ".join(f"{want ^ s:#06x}" for s in sessions)
        raise ProtocolError(ErrorCode.BAD_CRC, f"CRC {got:#06x} does not match the computed "
                                               f"{forms}")

    @classmethod
    def decode(cls, data, sessions=(0,)) -> Frame:
        """Parse one wire frame without its delimiter (COBS-encoded bytes)."""
        data = bytes(data)
        if len(data) > MAX_ENCODED_FRAME:
            raise ProtocolError(ErrorCode.TOO_LARGE,
                                f"encoded frame of {len(data)} bytes is over the "
                                f"{MAX_ENCODED_FRAME}-byte maximum")
        return cls.from_body(cobs_decode(data), sessions)


class FrameDecoder:
    """Turns a byte stream, in any chunking, into valid frames; never raises on garbage.

    ``dropped`` counts the bad frames per ``ErrorCode`` (BAD_CRC, BAD_LENGTH and
    TOO_LARGE, all present from the start); ``received`` counts the valid ones.
    Memory stays bounded: at most MAX_ENCODED_FRAME bytes are buffered.
    ``session``: frames are taken in that session's form and in the open form
    (each frame's ``session`` says which); settable.
    """

    def __init__(self, session: int = 0):
        self.session = checked_int("session", session, 0, U16_MAX)
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
            frames.append(Frame.decode(self._buffer, (self.session, 0) if self.session
                                       else (0,)))
            self.received += 1
        except ProtocolError as exc:
            self.dropped[exc.code] = self.dropped.get(exc.code, 0) + 1
        self._buffer.clear()
