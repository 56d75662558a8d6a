"""Payloads of the wire protocol (:mod:`.protocol`): each command's request and reply.

Layouts (``struct`` formats are the ``*_FORMAT`` constants below)::

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
    OPEN    offset 0: nonce u32      chosen by the client, echoed in the reply
            reply:    nonce u32, session u16 (1 .. 65535)
    ERROR   offset 0: code u8 (an ErrorCode), then the message, UTF-8

Addresses count 64-bit words (address + 1 is the next word); the memory map
(config, weights, neuron state, SSM state, counters) is the device's and is
described by INFO.  An access must not run past the 32-bit address space
(address + count <= 2**32).  The INFO reply's JSON is opaque to this module.

Python API: ``pack_*`` / ``unpack_*`` for each payload.  ``pack_*`` validate
their arguments and raise ``ValueError`` naming the bad value; ``unpack_*`` raise
``ProtocolError`` so a device can turn the exception into its error reply:
``.code`` is BAD_PAYLOAD for a malformed payload (wrong size, counts that
disagree), ADDRESS_OUT_OF_RANGE for an access past the 32-bit address space,
TOO_LARGE for a READ whose reply would not fit (or a payload over MAX_PAYLOAD).
The memory map and the RUN input range are the device's to check.
"""

from __future__ import annotations

import operator
import struct

from .protocol import (
    I16_MAX,
    I16_MIN,
    MAX_PAYLOAD,
    U16_MAX,
    U32_MAX,
    U64_MAX,
    ErrorCode,
    ProtocolError,
    checked_int,
)

__all__ = [
    "ERROR_HEADER_FORMAT", "MAX_READ_WORDS", "MAX_WRITE_WORDS", "READ_FORMAT",
    "RUN_COUNT_FORMAT", "RUN_EVENT_FORMAT", "RUN_RECORD_FORMAT", "WORD_FORMAT",
    "WRITE_HEADER_FORMAT", "OPEN_FORMAT", "OPEN_REPLY_FORMAT", "pack_open", "unpack_open",
    "pack_open_reply", "unpack_open_reply", "pack_error", "pack_read", "pack_read_reply",
    "pack_run",
    "pack_run_reply", "pack_write", "unpack_error", "unpack_read", "unpack_read_reply",
    "unpack_run", "unpack_run_reply", "unpack_write",
]

WRITE_HEADER_FORMAT = "<IH"        # address, count (then count x WORD_FORMAT)
READ_FORMAT = "<IH"                # address, count
WORD_FORMAT = "<Q"                 # one memory word
RUN_COUNT_FORMAT = "<H"            # RUN steps; per step n_events; per reply step n_out
RUN_EVENT_FORMAT = "<Hh"           # input index, value
RUN_RECORD_FORMAT = "<Q"           # one raw output record
ERROR_HEADER_FORMAT = "<B"         # code (then the UTF-8 message)
OPEN_FORMAT = "<I"                 # nonce
OPEN_REPLY_FORMAT = "<IH"          # nonce, session

_WRITE_HEADER = struct.Struct(WRITE_HEADER_FORMAT)
_READ = struct.Struct(READ_FORMAT)
_COUNT = struct.Struct(RUN_COUNT_FORMAT)
_EVENT = struct.Struct(RUN_EVENT_FORMAT)
_ERROR_HEADER = struct.Struct(ERROR_HEADER_FORMAT)
_OPEN = struct.Struct(OPEN_FORMAT)
_OPEN_REPLY = struct.Struct(OPEN_REPLY_FORMAT)
_WORD_SIZE = struct.calcsize(WORD_FORMAT)                                      # 8

MAX_WRITE_WORDS = (MAX_PAYLOAD - _WRITE_HEADER.size) // _WORD_SIZE            # 127
MAX_READ_WORDS = MAX_PAYLOAD // _WORD_SIZE                                     # 128

_ADDRESS_SPACE = U32_MAX + 1
_ERROR_CODES = frozenset(int(c) for c in ErrorCode)


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
    return [checked_int(f"{name}[{i}]", w, 0, U64_MAX) for i, w in enumerate(words)]


def pack_write(address: int, words) -> bytes:
    """WRITE payload: ``words`` (u64 each, 1..MAX_WRITE_WORDS) from word ``address`` on."""
    address = checked_int("address", address, 0, U32_MAX)
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
    address = checked_int("address", address, 0, U32_MAX)
    count = checked_int("count", count, 1, MAX_READ_WORDS)
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
            out += _EVENT.pack(checked_int(f"steps[{s}][{e}] index", index, 0, U16_MAX),
                               checked_int(f"steps[{s}][{e}] value", value, I16_MIN, I16_MAX))
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
        records = [checked_int(f"outputs[{s}][{r}]", v, 0, U64_MAX) for r, v in enumerate(step)]
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


def pack_open(nonce: int) -> bytes:
    return _OPEN.pack(checked_int("nonce", nonce, 0, U32_MAX))


def unpack_open(payload) -> int:
    """The nonce of an OPEN request."""
    payload = _check_size("OPEN", payload)
    if len(payload) != _OPEN.size:
        raise _bad(f"OPEN payload of {len(payload)} bytes, not {_OPEN.size} (nonce u32)")
    return _OPEN.unpack(payload)[0]


def pack_open_reply(nonce: int, session: int) -> bytes:
    return _OPEN_REPLY.pack(checked_int("nonce", nonce, 0, U32_MAX),
                            checked_int("session", session, 1, U16_MAX))


def unpack_open_reply(payload) -> tuple[int, int]:
    """``(nonce, session)`` of an OPEN reply."""
    payload = _check_size("OPEN reply", payload)
    if len(payload) != _OPEN_REPLY.size:
        raise _bad(f"OPEN reply of {len(payload)} bytes, not {_OPEN_REPLY.size} "
                   f"(nonce u32, session u16)")
    nonce, session = _OPEN_REPLY.unpack(payload)
    if session == 0:
        raise _bad("OPEN reply with session 0")
    return nonce, session


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
