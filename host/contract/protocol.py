"""The wire protocol between the host and the SoC: commands, replies, error codes.

One contract for every transport (serial, the simulated board's TCP port, the
PCIe stream) and every implementation (this host runtime, the gateware frame
decoder and command engine, the simulated board).  All multi-byte integers are
little-endian.  These modules are pure Python (stdlib only) and do no I/O:
:mod:`.framing` turns a frame (cmd, seq, payload) into bytes on the wire and
back; :mod:`.payloads` packs and unpacks each command's payload; this module
holds what both use.

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
    0x06   OPEN    nonce u32                      nonce u32, session u16
    0xFF   ERROR   (reply only)                   code u8, message (UTF-8, may be empty)

A reply has the request's cmd with bit 7 set (``cmd | 0x80``) and the
request's seq; a request cmd has bit 7 clear.  Request cmd 0x7F is reserved
(its reply would be the error reply 0xFF).  Any request can be answered with
an ERROR reply instead of its normal reply.

Sessions: OPEN starts a new session.  The device numbers its sessions
1, 2, ... 65535, 1, ... (0 is "none", its state at power-on) and answers OPEN
with the request's nonce and the new session.  A frame of session ``s`` carries
its CRC XOR ``s`` (:mod:`.framing`); the device takes a frame only in its
current session's form, or an OPEN in the open form (``s = 0``), and drops the
rest as BAD_CRC, so the requests of a client whose session has ended are never
executed and its replies never pass another client's check.  The OPEN reply is
in the open form (the client does not know its session before it).

Sequence numbers are u8 and wrap (``next_seq``: 255 -> 0).  The device answers
a request that repeats the previous request's seq from its cached reply
instead of executing it again (a retried RUN or WRITE is never applied twice).

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
                             (the simulated board's answer to a second client,
                             in the open form, with seq 0, before it closes the
                             connection)
    7  TOO_LARGE             frame dropped: over MAX_ENCODED_FRAME / MAX_BODY
                             (a drop counter); or error reply: the reply would
                             exceed MAX_PAYLOAD (a READ of too many words, a RUN
                             with too many outputs)
    8  WATCHDOG              error reply: a RUN step ran past the device's
                             watchdog; the core was reset to its power-on state
    9  BAD_TABLE             error reply: a RUN step reached a bad layer or edge
                             entry (its message names it); the core was reset
                             to its power-on state

Python API: ``Command``, ``ErrorCode``, ``ProtocolError`` (``.code`` is its
``ErrorCode``), ``next_seq``, ``reply_cmd``, ``MAX_PAYLOAD`` and the integer
ranges of the fields.
"""

from __future__ import annotations

import operator
from enum import IntEnum

__all__ = [
    "ERROR_REPLY", "I16_MAX", "I16_MIN", "MAX_PAYLOAD", "REPLY_FLAG", "U8_MAX", "U16_MAX",
    "U32_MAX", "U64_MAX", "Command", "ErrorCode", "ProtocolError", "checked_int", "next_seq",
    "reply_cmd",
]


class Command(IntEnum):
    """Request commands (``cmd`` of a request frame)."""

    INFO = 0x01
    WRITE = 0x02
    READ = 0x03
    RESET = 0x04
    RUN = 0x05
    OPEN = 0x06


class ErrorCode(IntEnum):
    """Codes of the ERROR reply, and the keys of ``FrameDecoder.dropped``."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_COMMAND = 3
    ADDRESS_OUT_OF_RANGE = 4
    BAD_PAYLOAD = 5
    BUSY = 6
    TOO_LARGE = 7
    WATCHDOG = 8
    BAD_TABLE = 9


class ProtocolError(Exception):
    """A frame or payload that breaks the protocol; ``.code`` is its ``ErrorCode``."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = ErrorCode(code)


REPLY_FLAG = 0x80                  # reply cmd = request cmd | REPLY_FLAG
ERROR_REPLY = 0xFF                 # cmd of an ERROR reply
MAX_PAYLOAD = 1024                 # payload bytes of one frame

U8_MAX, U16_MAX, U32_MAX, U64_MAX = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
I16_MIN, I16_MAX = -0x8000, 0x7FFF


def checked_int(name: str, value, lowest: int, highest: int) -> int:
    """``value`` as an int in ``lowest..highest``, or ValueError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} {value!r} is not an integer") from None
    if not lowest <= number <= highest:
        raise ValueError(f"{name} {value!r} is out of range {lowest}..{highest}")
    return number


def next_seq(seq: int) -> int:
    """The sequence number after ``seq`` (u8, wrapping 255 -> 0)."""
    return (checked_int("seq", seq, 0, U8_MAX) + 1) & U8_MAX


def reply_cmd(cmd: int) -> int:
    """The cmd of the reply to request ``cmd`` (``cmd | 0x80``)."""
    return checked_int("request cmd", cmd, 0, REPLY_FLAG - 2) | REPLY_FLAG
