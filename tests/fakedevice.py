"""An in-process stand-in for a device at the protocol level (a test double for
the client's retry, window and replay logic; the real device is the simulated
board).  It keeps a word memory, executes WRITE/READ/RESET/INFO, and answers RUN
with one record per step holding the step's event count and the number of RUNs
executed so far, so a test sees whether a RUN ran twice.  Like the device, it
answers a repeated ``(seq, crc)`` from its one-deep reply cache, and keeps
sessions: OPEN numbers them, a frame is taken in the current session's form (an
OPEN in the open form too), each reply goes in its request's form."""

from __future__ import annotations

import json
import time

from spikeforge.contract.framing import Frame, FrameDecoder, crc16
from spikeforge.contract.payloads import (
    pack_error,
    pack_open_reply,
    pack_read_reply,
    pack_run_reply,
    unpack_open,
    unpack_read,
    unpack_run,
    unpack_write,
)
from spikeforge.contract.protocol import ERROR_REPLY, Command, ErrorCode, ProtocolError, reply_cmd
from spikeforge.transport import LinkClosed, Transport


class FakeDevice(Transport):
    url = "fake://"

    def __init__(self, *, words: int = 4096, mute: bool = False):
        self.memory = [0] * words
        self.decoder = FrameDecoder()
        self.outbox = bytearray()
        self.cache: tuple | None = None
        self.executed = {cmd: 0 for cmd in Command}
        self.replays = 0
        self.mute = mute        # receives and executes, never answers
        self.closed = False
        self.session = 0
        self.stale = 0          # open-form frames other than OPEN in a session, dropped

    def _execute(self, frame: Frame) -> bytes:
        try:
            cmd = Command(frame.cmd)
        except ValueError:
            return Frame(ERROR_REPLY, frame.seq, pack_error(ErrorCode.UNKNOWN_COMMAND, "unknown"),
                         frame.session).encode()
        self.executed[cmd] += 1
        try:
            if cmd == Command.OPEN:
                self.session = self.session % 0xFFFF + 1
                payload = pack_open_reply(unpack_open(frame.payload), self.session)
            elif cmd == Command.INFO:
                payload = json.dumps({"device": "fake"}).encode()
            elif cmd == Command.WRITE:
                addr, words = unpack_write(frame.payload)
                if addr + len(words) > len(self.memory):
                    raise ProtocolError(ErrorCode.ADDRESS_OUT_OF_RANGE, "out of range")
                self.memory[addr:addr + len(words)] = words
                payload = b""
            elif cmd == Command.READ:
                addr, count = unpack_read(frame.payload)
                if addr + count > len(self.memory):
                    raise ProtocolError(ErrorCode.ADDRESS_OUT_OF_RANGE, "out of range")
                payload = pack_read_reply(self.memory[addr:addr + count])
            elif cmd == Command.RESET:
                payload = b""
            else:
                steps = unpack_run(frame.payload)
                runs = self.executed[Command.RUN] - 1  # RUNs executed before this one
                payload = pack_run_reply([[len(events) | runs << 32] for events in steps])
            return Frame(reply_cmd(cmd), frame.seq, payload, frame.session).encode()
        except ProtocolError as exc:
            return Frame(ERROR_REPLY, frame.seq, pack_error(exc.code, str(exc)),
                         frame.session).encode()

    def write(self, data: bytes) -> None:
        if self.closed:
            raise LinkClosed("fake device closed")
        self.decoder.session = self.session
        for frame in self.decoder.feed(data):
            if frame.session != self.session and frame.cmd != Command.OPEN:
                self.stale += 1
                continue
            key = (frame.seq, crc16(frame.to_body()[:-2]))
            if self.cache is not None and self.cache[0] == key:
                self.replays += 1
                reply = self.cache[1]
            else:
                reply = self._execute(frame)
                self.cache = (key, reply)
            if not self.mute:
                self.outbox += reply

    def read(self, timeout: float) -> bytes:
        if self.closed:
            raise LinkClosed("fake device closed")
        data, self.outbox = bytes(self.outbox), bytearray()
        if not data:
            time.sleep(min(timeout, 0.001))
        return data

    def close(self) -> None:
        self.closed = True


def run_record(record: int) -> tuple[int, int]:
    """(events, RUNs executed before) of a FakeDevice RUN record."""
    return record & 0xFFFF_FFFF, record >> 32


__all__ = ["FakeDevice", "run_record"]
