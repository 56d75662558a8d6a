"""The protocol layer: requests and replies over any :class:`.transport.Transport`.

:meth:`Client.request` sends one request and waits for its reply, retrying on
timeout (the device answers a repeated ``(seq, crc)`` from its reply cache, so
a retried request is never executed twice; see ``docs/device.md``).
:meth:`Client.pipeline` keeps up to ``window`` requests in flight; it is for
requests whose repetition and reordering are harmless (the WRITEs and READs of
a load: each address once), because the device caches only the last reply.

Before a retry the client sends a lone delimiter, so that half a frame left on
the line cannot swallow the retried frame.  Replies that do not match an
outstanding request (a late duplicate, a stale sequence number) are ignored
and counted in ``stats``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator

from .contract.framing import DELIMITER, Frame, FrameDecoder
from .contract.payloads import unpack_error
from .contract.protocol import ERROR_REPLY, ProtocolError, next_seq, reply_cmd
from .errors import DeviceReplyError, LinkError, command_name
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
        self.stats = {"requests": 0, "retries": 0, "stray_replies": 0}

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

    def request(self, cmd: int, payload: bytes = b"", *, timeout: float | None = None) -> bytes:
        """Send one request, return its reply payload (or raise :class:`DeviceReplyError`)."""
        return next(self.pipeline([(cmd, payload)], timeout=timeout))

    def pipeline(self, requests: Iterable[tuple[int, bytes]], *,
                 timeout: float | None = None) -> Iterator[bytes]:
        """Send ``requests`` with up to ``window`` in flight; yield the reply
        payloads in request order.  An ERROR reply raises
        :class:`DeviceReplyError` (the requests after it may have been executed)."""
        timeout = self.timeout if timeout is None else timeout
        pending = iter(requests)
        flight: deque[list] = deque()  # [seq, cmd, wire, reply or None]
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
                wire = Frame(int(cmd), seq, bytes(payload)).encode()
                flight.append([seq, int(cmd), wire, None])
                self.stats["requests"] += 1
                self.transport.write(wire)
            if not flight:
                return
            deadline = time.monotonic() + timeout
            while flight[0][3] is None:
                frame = self._receive(deadline)
                if frame is None:
                    break
                for entry in flight:
                    seq, cmd = entry[0], entry[1]
                    if frame.seq == seq and frame.cmd in (reply_cmd(cmd), ERROR_REPLY) \
                            and entry[3] is None:
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
                _, cmd, _, frame = flight.popleft()
                if frame.cmd == ERROR_REPLY:
                    try:
                        code, message = unpack_error(frame.payload)
                    except ProtocolError as exc:
                        code, message = 0, f"(malformed error reply: {exc})"
                    raise DeviceReplyError(cmd, code, message)
                yield frame.payload

