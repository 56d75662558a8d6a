"""The protocol layer: requests and replies over any :class:`.transport.Transport`.

:meth:`Client.request` sends one request and waits for its reply, retrying on
timeout (the device answers a repeated ``(seq, crc)`` from its reply cache, so
a retried request is never executed twice; see ``docs/device.md``).
:meth:`Client.pipeline` keeps up to ``window`` requests in flight; it is for
requests whose repetition and reordering are harmless (the WRITEs and READs of
a load: each address once), because the device caches only the last reply.

Before a retry the client sends a lone delimiter, so that half a frame left on
the line cannot swallow the retried frame.  Replies that do not match an
outstanding request (a late duplicate, a stale sequence number, another
session's) are ignored and counted in ``stats``.

Sessions (``contract.protocol``): the first request opens one (:meth:`open`, an
OPEN with a random nonce, in the open form); every later frame goes in its form,
so the device executes no request of a client whose session has ended, and no
reply to another session's request passes this client's check.  A device in use
by another client answers BUSY (:class:`.errors.DeviceBusy`).
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Iterable, Iterator

from .contract.framing import DELIMITER, Frame, FrameDecoder
from .contract.payloads import pack_open, unpack_error, unpack_open_reply
from .contract.protocol import ERROR_REPLY, Command, ErrorCode, ProtocolError, next_seq, reply_cmd
from .errors import DeviceBusy, DeviceReplyError, LinkError, command_name
from .transport import Transport

__all__ = ["Client"]


class Client:
    """Requests and replies over ``transport``.

    ``timeout``: seconds to wait for a reply before retrying; ``retries``: how
    many times a request is re-sent before :class:`LinkError`; ``window``:
    requests in flight in :meth:`pipeline`.
    """

    def __init__(self, transport: Transport, *, timeout: float = 1.0, retries: int = 8,
                 window: int = 8, seq: int = 0):
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        if not isinstance(window, int) or not 1 <= window <= 128:
            raise ValueError(f"window must be an integer in 1..128, not {window!r}")
        self.transport = transport
        self.timeout, self.retries, self.window = timeout, retries, window
        self._seq = seq & 0xFF
        self._decoder = FrameDecoder()
        self._frames: deque[Frame] = deque()
        self.session = 0        # 0: none opened yet
        self._opening = False
        self.stats = {"requests": 0, "retries": 0, "stray_replies": 0}

    def open(self) -> int:
        """Open a new session (the device's number for it); later requests use it.
        A lone delimiter goes first, so half a frame left on the line by an earlier
        client cannot swallow the OPEN."""
        nonce = int.from_bytes(os.urandom(4), "little")
        self.transport.write(DELIMITER)  # ends whatever half frame the line may hold
        self._opening = True
        try:
            _, session = unpack_open_reply(self.request(Command.OPEN, pack_open(nonce)))
        except ProtocolError as exc:
            raise LinkError(f"{self.transport.url}: malformed OPEN reply ({exc})") from None
        finally:
            self._opening = False
        self.session = self._decoder.session = session
        return session

    def _matches(self, entry, frame: Frame) -> bool:
        """Whether ``frame`` is the reply to the request ``entry`` (its seq and command,
        in the request's form; an OPEN's reply in the open form, with its nonce)."""
        seq, cmd, _, reply, payload = entry
        if reply is not None or frame.seq != seq or frame.cmd not in (reply_cmd(cmd),
                                                                     ERROR_REPLY):
            return False
        if cmd == Command.OPEN:
            return frame.session == 0 and (frame.cmd == ERROR_REPLY
                                           or frame.payload[:4] == payload[:4])
        return frame.session == self.session

    @property
    def dropped(self) -> dict:
        """Frames from the device dropped by the host's decoder, per ``ErrorCode``."""
        return dict(self._decoder.dropped)

    def _next_seq(self) -> int:
        seq, self._seq = self._seq, next_seq(self._seq)
        return seq

    def _receive(self, deadline: float) -> Frame | None:
        """The next good frame from the device, or None at the deadline."""
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.transport.read(left)
            if data:
                self._frames.extend(self._decoder.feed(data))
        return self._frames.popleft()

    def _check_busy(self, frame: Frame) -> None:
        """A BUSY error in the open form: the device serves another client."""
        if frame.cmd == ERROR_REPLY and frame.session == 0 and \
                frame.payload[:1] == bytes([ErrorCode.BUSY]):
            raise DeviceBusy(f"{self.transport.url}: the device is in use by another client")

    def request(self, cmd: int, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        """Send one request, return its reply payload (or raise :class:`DeviceReplyError`)."""
        return next(self.pipeline([(cmd, payload)], timeout=timeout))

    def pipeline(self, requests: Iterable[tuple[int, bytes]], *,
                 timeout: float | None = None) -> Iterator[bytes]:
        """Send ``requests`` with up to ``window`` in flight; yield the reply
        payloads in request order.  An ERROR reply raises
        :class:`DeviceReplyError` (the requests after it may have been executed)."""
        timeout = self.timeout if timeout is None else timeout
        if self.session == 0 and not self._opening:
            self.open()
        pending = iter(requests)
        flight: deque[list] = deque()  # [seq, cmd, wire, reply or None, payload]
        attempts = 0
        exhausted = False
        while True:
            while not exhausted and len(flight) < self.window:
                try:
                    cmd, payload = next(pending)
                except StopIteration:
                    exhausted = True
                    break
                seq = self._next_seq()
                session = 0 if cmd == Command.OPEN else self.session
                wire = Frame(int(cmd), seq, bytes(payload), session).encode()
                flight.append([seq, int(cmd), wire, None, bytes(payload)])
                self.stats["requests"] += 1
                self.transport.write(wire)
            if not flight:
                return
            deadline = time.monotonic() + timeout
            while flight[0][3] is None:
                frame = self._receive(deadline)
                if frame is None:
                    break
                self._check_busy(frame)
                for entry in flight:
                    if self._matches(entry, frame):
                        entry[3] = frame
                        break
                else:
                    self.stats["stray_replies"] += 1
            if flight[0][3] is None:  # timeout: go back and resend what is unanswered
                attempts += 1
                if attempts > self.retries:
                    name = command_name(flight[0][1])
                    raise LinkError(f"{self.transport.url}: no reply to {name} "
                                    f"(seq {flight[0][0]}) after {self.retries + 1} "
                                    f"attempts of {timeout:g} s")
                self.stats["retries"] += 1
                self.transport.write(DELIMITER)
                for entry in flight:
                    if entry[3] is None:
                        self.transport.write(entry[2])
                continue
            attempts = 0
            while flight and flight[0][3] is not None:
                _, cmd, _, frame, _ = flight.popleft()
                if frame.cmd == ERROR_REPLY:
                    try:
                        code, message = unpack_error(frame.payload)
                    except ProtocolError as exc:
                        code, message = 0, f"(malformed error reply: {exc})"
                    raise DeviceReplyError(cmd, code, message)
                yield frame.payload

