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

When a request is re-sent (the device answers requests one at a time, in
arrival order):

* *Gap*: a reply to a request proves lost every older unanswered request whose
  last send came before that request's first send; they are re-sent at once.
* *Damaged*: a frame the decoder drops while one request alone is unanswered
  is taken as its reply; it is re-sent at once.
* *Timeout*: the oldest unanswered request is re-sent (alone) when nothing has
  come from the device for the current wait.  The first wait is the command's
  reply-time estimate (``srtt + 4 * rttvar`` of the replies to first sends,
  Jacobson/Karels; at least ``MIN_TIMEOUT``; the user's ``timeout`` until a
  reply has been timed).  The first ``f`` timeouts of a request keep it, ``f``
  being the losses in a row the command's recent loss rate ``p`` explains
  (``p ** f >= EXPLAINED``; ``p``: the share of its sends lost, averaged over
  about 16); each further timeout doubles it, up to ``timeout``.  After
  ``retries + f + 1`` timeouts, or ``64 * (retries + 1)`` sends in all, the
  request fails with :class:`LinkError`.

So a clean link backs off at once and gives up after ``retries + 1`` timeouts,
while a noisy one re-sends its expected losses quickly.

:meth:`Client.error_rate` estimates the link's error rate per byte from the
recent frames from the device (damaged ones among all, and their mean size);
the device layer sizes its requests from it.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .contract.framing import DELIMITER, Frame, FrameDecoder
from .contract.payloads import pack_open, unpack_error, unpack_open_reply
from .contract.protocol import ERROR_REPLY, Command, ErrorCode, ProtocolError, next_seq, reply_cmd
from .errors import DeviceBusy, DeviceReplyError, LinkError, command_name
from .transport import Transport

__all__ = ["Client", "MIN_TIMEOUT", "EXPLAINED"]

MIN_TIMEOUT = 0.02
"""Seconds: the shortest first wait (a host's scheduling jitter)."""
EXPLAINED = 1e-6
"""A run of losses at least this likely at a command's loss rate is taken for
noise, not a slow device: it is re-sent without backing off."""
_GAIN = 1 / 16          # weight of one send in a command's loss rate
_MOST_SENDS = 64        # times (retries + 1): the sends of one request


@dataclass(eq=False)
class _Request:
    """A request in flight: its frame (and payload), its reply once it came, and its
    sends (how many, and the numbers of its first and last among the client's sends)."""

    seq: int
    cmd: int
    wire: bytes
    first: int
    last: int
    sends: int = 1
    reply: Frame | None = None
    payload: bytes = b""


class Client:
    """Requests and replies over ``transport``.

    ``timeout``: the longest wait for a reply before re-sending; ``retries``: the
    timeouts of a request, beyond those its loss rate explains, before
    :class:`LinkError` (the rule is in the module docstring); ``window``:
    requests in flight in :meth:`pipeline`.  ``stats``: ``requests`` sent,
    ``retries`` (re-sends) and ``stray_replies``.
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
        self._sends = 0                                  # frames sent so far
        self._rtt: dict[int, tuple[float, float]] = {}  # cmd -> (srtt, rttvar), seconds
        self._loss: dict[int, float] = {}               # cmd -> share of sends lost lately
        self._noise = [0.0, 0.0, 0.0]   # recent frames from the device: bytes, frames, damaged
        self._counted = (0, 0)          # the decoder's good and dropped frames counted so far

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

    def _matches(self, request: _Request, frame: Frame) -> bool:
        """Whether ``frame`` is the reply to ``request`` (its seq and command, in the
        request's form; an OPEN's reply in the open form, with its nonce)."""
        if request.reply is not None or frame.seq != request.seq or \
                frame.cmd not in (reply_cmd(request.cmd), ERROR_REPLY):
            return False
        if request.cmd == Command.OPEN:
            return frame.session == 0 and (frame.cmd == ERROR_REPLY
                                           or frame.payload[:4] == request.payload[:4])
        return frame.session == self.session

    def _check_busy(self, frame: Frame) -> None:
        """A BUSY error in the open form: the device serves another client."""
        if frame.cmd == ERROR_REPLY and frame.session == 0 and \
                frame.payload[:1] == bytes([ErrorCode.BUSY]):
            raise DeviceBusy(f"{self.transport.url}: the device is in use by another client")

    @property
    def dropped(self) -> dict:
        """Frames from the device dropped by the host's decoder, per ``ErrorCode``."""
        return dict(self._decoder.dropped)

    def _next_seq(self) -> int:
        seq, self._seq = self._seq, next_seq(self._seq)
        return seq

    def _drops(self) -> int:
        return sum(self._decoder.dropped.values())

    def _receive(self, deadline: float, drops: int) -> Frame | None:
        """The next good frame from the device; None at the deadline or once the
        decoder has dropped more than ``drops`` frames in all."""
        while not self._frames:
            left = deadline - time.monotonic()
            if left <= 0 or self._drops() > drops:
                return None
            data = self.transport.read(left)
            if data:
                self._frames.extend(self._decoder.feed(data))
                self._note(len(data))
        return self._frames.popleft()

    def _note(self, size: int) -> None:
        """Count ``size`` bytes read and the frames they ended (the last 128 to 256)."""
        good, bad = self._decoder.received, self._drops()
        noise = self._noise
        noise[0] += size
        noise[1] += good - self._counted[0] + bad - self._counted[1]
        noise[2] += bad - self._counted[1]
        self._counted = (good, bad)
        if noise[1] > 256:
            self._noise = [x / 2 for x in noise]

    def error_rate(self) -> float:
        """The link's error rate per byte, ``lambda``: a frame of ``n`` bytes gets
        through with probability ``exp(-lambda * n)``.  Estimated from the last 128
        to 256 frames from the device: ``-ln(1 - damaged / (frames + 1))`` over
        their mean size (0 while none was damaged; taken to hold both ways)."""
        size, frames, damaged = self._noise
        if not damaged:
            return 0.0
        return -math.log1p(-damaged / (frames + 1)) * frames / size

    def loss_rate(self, cmd: int) -> float:
        """The share of ``cmd``'s sends lost lately (0 until one is lost)."""
        return self._loss.get(int(cmd), 0.0)

    def _count(self, cmd: int, lost: bool) -> None:
        loss = self._loss.get(cmd, 0.0)
        self._loss[cmd] = loss + _GAIN * (lost - loss)

    def _time(self, cmd: int, seconds: float) -> None:
        if cmd not in self._rtt:
            self._rtt[cmd] = (seconds, seconds / 2)
        else:
            srtt, var = self._rtt[cmd]
            self._rtt[cmd] = (srtt + (seconds - srtt) / 8, var + (abs(seconds - srtt) - var) / 4)

    def _wait(self, cmd: int, timeouts: int, free: int, timeout: float) -> float:
        """The wait before the next timeout of a ``cmd`` request (module docstring)."""
        if cmd not in self._rtt:
            return timeout
        srtt, var = self._rtt[cmd]
        first = max(MIN_TIMEOUT, srtt + 4 * var)
        return min(timeout, first * 2 ** max(0, timeouts - free))

    def _explained(self, cmd: int) -> int:
        """The timeouts in a row that ``cmd``'s loss rate explains."""
        loss = min(self.loss_rate(cmd), 0.99)
        return int(math.log(EXPLAINED) / math.log(loss)) if loss > 0 else 0

    def _send(self, request: _Request, data: bytes) -> None:
        self._sends += 1
        request.last = self._sends
        self.transport.write(data)

    def _resend(self, request: _Request) -> None:
        """Send ``request`` again, after a lone delimiter (one write: a TCP link
        would hold a second small write back for the first one's ACK)."""
        self._count(request.cmd, True)
        self.stats["retries"] += 1
        request.sends += 1
        self._send(request, DELIMITER + request.wire)

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
        flight: deque[_Request] = deque()
        exhausted = False
        timeouts, free, waited = 0, None, 0.0   # of the oldest request in flight
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
                request = _Request(seq, int(cmd), wire, first=self._sends + 1,
                                   last=self._sends + 1, payload=bytes(payload))
                flight.append(request)
                self.stats["requests"] += 1
                self._send(request, request.wire)
            if not flight:
                return
            head = flight[0]
            if head.reply is None:
                if free is None:
                    free = self._explained(head.cmd)
                wait = self._wait(head.cmd, timeouts, free, timeout)
                damaged = self._await(flight, wait)
                if head.reply is None:  # no reply: re-send the oldest request
                    timeouts += not damaged
                    waited += 0.0 if damaged else wait
                    if timeouts > self.retries + free or \
                            head.sends >= _MOST_SENDS * (self.retries + 1):
                        raise LinkError(f"{self.transport.url}: no reply to "
                                        f"{command_name(head.cmd)} (seq {head.seq}) after "
                                        f"{head.sends} attempts ({timeouts} timeouts, "
                                        f"{waited:.3g} s of waiting)")
                    self._resend(head)
                    continue
            timeouts, free, waited = 0, None, 0.0
            while flight and flight[0].reply is not None:
                request = flight.popleft()
                self._count(request.cmd, False)
                frame = request.reply
                if frame.cmd == ERROR_REPLY:
                    try:
                        code, message = unpack_error(frame.payload)
                    except ProtocolError as exc:
                        code, message = 0, f"(malformed error reply: {exc})"
                    raise DeviceReplyError(request.cmd, code, message)
                yield frame.payload

    def _await(self, flight: deque[_Request], wait: float) -> bool:
        """Take replies until the oldest request in ``flight`` has its reply, nothing
        has come for ``wait`` seconds, or a damaged frame came while it alone is
        unanswered (then True).  Re-sends the requests a reply proves lost (gap)."""
        head = flight[0]
        drops = self._drops()
        since = time.monotonic()
        while head.reply is None:
            frame = self._receive(since + wait, drops)
            now = time.monotonic()
            if frame is None:
                if self._drops() == drops:
                    return False             # the wait is over
                drops, since = self._drops(), now
                if sum(r.reply is None for r in flight) == 1:
                    return True
                continue
            self._check_busy(frame)
            answered = next((r for r in flight if self._matches(r, frame)), None)
            if answered is None:
                self.stats["stray_replies"] += 1
            else:
                answered.reply = frame
                if answered.sends == 1:
                    self._time(answered.cmd, now - since)
                for older in flight:
                    if older is answered:
                        break
                    if older.reply is None and older.last < answered.first:
                        self._resend(older)
            since = now
        return False
