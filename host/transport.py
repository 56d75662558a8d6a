"""Transports: how bytes reach a device.  The protocol layer above them
(:mod:`.client`) is the same for every transport, so the simulated board and a
real one are driven by the very same code.

A :class:`Transport` moves raw bytes: ``write(data)`` sends them all,
``read(timeout)`` returns the bytes that have arrived (at least one), or
``b""`` when ``timeout`` seconds pass without any, and raises
:class:`LinkClosed` when the other end has gone away; ``close()`` releases it
(idempotent).  :func:`open_transport` picks the implementation from a URL:

=================================  ==============================================
URL                                transport
=================================  ==============================================
``sim://`` or ``sim://CONFIG``     :class:`SimTransport`: starts and owns a
                                   simulated board (Verilator build of the SoC);
                                   ``?uart=1`` simulates the UART PHY bit by bit
``xdma:///dev/xdma0[?channel=N]``  :class:`XdmaTransport`: the XDMA driver's
                                   ``/dev/xdma0_h2c_N`` / ``_c2h_N`` stream devices
anything else                      :class:`SerialTransport`: pyserial's
                                   ``serial_for_url`` (``/dev/ttyUSB1``, ``COM3``,
                                   ``socket://HOST:PORT``, ``rfc2217://...``,
                                   ``loop://``)
=================================  ==============================================

:class:`FaultyTransport` wraps any transport and drops or corrupts bytes, or
flips bits, at a set rate (and can lose whole replies), for testing the
protocol's recovery.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import random
import select
import socket
import threading
from urllib.parse import parse_qs, urlparse

from .errors import LinkClosed, LinkError

__all__ = ["Transport", "LinkError", "LinkClosed", "SerialTransport", "SimTransport",
           "XdmaTransport", "FaultyTransport", "open_transport", "DEFAULT_BAUD"]

DEFAULT_BAUD = 115200


class Transport:
    """A byte pipe to a device (see the module docstring for the contract)."""

    url: str = ""

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def read(self, timeout: float) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


class SerialTransport(Transport):
    """A serial port or any pyserial URL (``socket://``, ``rfc2217://``, ``loop://``)."""

    def __init__(self, url: str, *, baudrate: int = DEFAULT_BAUD):
        import serial

        self.url = url
        try:
            # exclusive: a second program cannot open the same serial port (its
            # replies would cross this one's); URL handlers ignore it.
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0,
                                               exclusive=True)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise LinkError(f"cannot open {url!r}: {exc}") from None
        self._error = serial.SerialException
        sock = getattr(self._port, "_socket", None)  # socket:// and rfc2217://
        if sock is not None:  # send each frame at once, not after the last one's ACK
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # socket://: reads straight from the socket (pyserial's read drops the bytes
        # it has when the other end closes right after them, e.g. a BUSY reply).
        self._sock = sock if url.startswith("socket://") else None

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (self._error, OSError) as exc:
            raise LinkClosed(f"{self.url}: write failed: {exc}") from None

    def read(self, timeout: float) -> bytes:
        # Wait up to ``timeout`` for one byte, then take whatever else has arrived
        # (``in_waiting`` is no help: for socket:// it is 0 or 1, not a count).
        if self._sock is not None:
            return self._read_socket(timeout)
        try:
            self._set_timeout(timeout)
            data = self._port.read(1)
            if data:
                self._set_timeout(0)
                data += self._port.read(65536)
            return data
        except (self._error, OSError) as exc:
            raise LinkClosed(f"{self.url}: {exc}") from None

    def _read_socket(self, timeout: float) -> bytes:
        """What has arrived on the socket, after waiting up to ``timeout`` for it."""
        try:
            ready, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
            data = self._sock.recv(65536) if ready else b""
        except OSError as exc:
            raise LinkClosed(f"{self.url}: read failed: {exc}") from None
        if ready and not data:
            raise LinkClosed(f"{self.url}: the other end closed the connection")
        return data

    def _set_timeout(self, timeout: float) -> None:
        if self._port.timeout != timeout:  # a real port reconfigures on every change
            self._port.timeout = timeout

    def close(self) -> None:
        port, self._port = getattr(self, "_port", None), None
        if port is not None:
            with contextlib.suppress(self._error, OSError):
                port.close()


class _ReaderThread:
    """Blocking reads of a file descriptor in a thread, handed out through a queue
    (works for character devices that do not support ``select``)."""

    def __init__(self, fd: int, name: str):
        self._fd = fd
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except OSError as exc:
                self._queue.put(exc)
                return
            self._queue.put(data)
            if not data:
                return

    def read(self, timeout: float) -> bytes:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return b""
        chunks = [item]
        while not isinstance(item, Exception) and item:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            chunks.append(item)
        data = b"".join(c for c in chunks if isinstance(c, bytes))
        end = chunks[-1]
        if isinstance(end, Exception) or not end:
            if data:  # hand out what came before the end; report the end next time
                self._queue.put(end)
                return data
            raise LinkClosed(f"read failed: {end}" if isinstance(end, Exception)
                             else "end of file")
        return data


class XdmaTransport(Transport):
    """The AXI-Stream channels of a Xilinx XDMA PCIe bridge: ``xdma:///dev/xdma0``
    writes to ``/dev/xdma0_h2c_0`` and reads from ``/dev/xdma0_c2h_0``
    (``?channel=N`` selects another channel).  Plain ``write()``/``read()`` move
    the stream's bytes."""

    def __init__(self, url: str):
        self.url = url
        parsed = urlparse(url)
        base = parsed.path
        if not base:
            raise LinkError(f"{url!r}: no device path (expected xdma:///dev/xdma0)")
        try:
            channel = int(parse_qs(parsed.query).get("channel", ["0"])[0])
        except ValueError:
            raise LinkError(f"{url!r}: channel must be an integer") from None
        self.h2c, self.c2h = f"{base}_h2c_{channel}", f"{base}_c2h_{channel}"
        self._out = self._in = None
        try:
            # Open the read side first: a named pipe standing in for the device
            # opens its write end only once a reader exists.
            self._in = os.open(self.c2h, os.O_RDONLY)
            self._out = os.open(self.h2c, os.O_WRONLY)
        except OSError as exc:
            self.close()
            raise LinkError(f"cannot open {url!r}: {exc}") from None
        self._reader = _ReaderThread(self._in, f"xdma-c2h-{base}")

    def write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                n = os.write(self._out, view)
                view = view[n:]
        except (OSError, TypeError) as exc:
            raise LinkClosed(f"{self.h2c}: write failed: {exc}") from None

    def read(self, timeout: float) -> bytes:
        if self._in is None:
            raise LinkClosed(f"{self.url}: closed")
        try:
            return self._reader.read(timeout)
        except LinkClosed as exc:
            raise LinkClosed(f"{self.c2h}: {exc}") from None

    def close(self) -> None:
        for name in ("_out", "_in"):
            fd = getattr(self, name, None)
            setattr(self, name, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)


class SimTransport(Transport):
    """``sim://CONFIG[?uart=1]``: starts a simulated board (built once per
    configuration and cached) and talks to it over its TCP port; closing stops
    the board.  With ``uart=1`` the board's byte stream goes through the UART
    PHY, simulated bit by bit (full fidelity, slower)."""

    DEFAULT_CONFIG = "demo"

    def __init__(self, url: str):
        from .sim.simboard import SimBoard

        self.url = url
        parsed = urlparse(url)
        name = (parsed.netloc + parsed.path).strip("/") or self.DEFAULT_CONFIG
        query = parse_qs(parsed.query)
        unknown = set(query) - {"uart"}
        if unknown:
            raise LinkError(f"{url!r}: unknown option {sorted(unknown)[0]!r} (known: uart)")
        uart = query.get("uart", ["0"])[-1] not in ("0", "", "false", "no")
        self.config_name = name
        self.board = SimBoard(name, uart=uart)
        try:
            self.board.start()
            self._link = SerialTransport(self.board.url)
        except BaseException:
            self.board.close()
            raise

    def write(self, data: bytes) -> None:
        self._link.write(data)

    def read(self, timeout: float) -> bytes:
        return self._link.read(timeout)

    def close(self) -> None:
        link = getattr(self, "_link", None)
        if link is not None:
            link.close()
        board = getattr(self, "board", None)
        if board is not None:
            board.close()


class FaultyTransport(Transport):
    """Wraps ``inner`` and damages the byte stream in both directions: each byte
    is dropped with probability ``drop_rate`` or has one random bit flipped with
    probability ``flip_rate`` (per *byte*); then each bit is flipped on its own
    with probability ``bit_error_rate`` (a line's BER: a byte is hit with
    probability ``1 - (1 - ber) ** 8``, about ``8 * ber``).  Seeded, so a test is
    repeatable.  ``dropped`` counts the bytes dropped, ``flipped`` the bits
    flipped.  :meth:`lose_replies` makes the next ``n`` replies vanish whole
    (everything read up to and including their delimiters)."""

    def __init__(self, inner: Transport, *, drop_rate: float = 0.0, flip_rate: float = 0.0,
                 bit_error_rate: float = 0.0, seed: int = 0):
        for name, rate in (("drop_rate", drop_rate), ("flip_rate", flip_rate),
                           ("bit_error_rate", bit_error_rate)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {rate!r}")
        self.inner, self.url = inner, inner.url
        self.drop_rate, self.flip_rate = drop_rate, flip_rate
        self.bit_error_rate = bit_error_rate
        self._rng = random.Random(seed)
        self._lose = 0
        self._clean_bits = self._gap()  # bits before the next bit error
        self.dropped = self.flipped = self.replies_lost = 0

    def lose_replies(self, n: int = 1) -> None:
        self._lose += n

    def _gap(self) -> int:
        """Bits up to the next bit error: geometric, as independent flips give."""
        if not self.bit_error_rate:
            return -1
        return int(math.log(1.0 - self._rng.random()) / math.log1p(-self.bit_error_rate))

    def _damage(self, data: bytes) -> bytes:
        if not (self.drop_rate or self.flip_rate or self.bit_error_rate):
            return data
        out = bytearray() if self.drop_rate or self.flip_rate else bytearray(data)
        if self.drop_rate or self.flip_rate:
            for byte in data:
                r = self._rng.random()
                if r < self.drop_rate:
                    self.dropped += 1
                    continue
                if r < self.drop_rate + self.flip_rate:
                    byte ^= 1 << self._rng.randrange(8)
                    self.flipped += 1
                out.append(byte)
        if self.bit_error_rate:
            bit, bits = self._clean_bits, 8 * len(out)
            while bit < bits:
                out[bit >> 3] ^= 1 << (bit & 7)
                self.flipped += 1
                bit += 1 + self._gap()
            self._clean_bits = bit - bits
        return bytes(out)

    def write(self, data: bytes) -> None:
        self.inner.write(self._damage(data))

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        while self._lose and data:
            cut = data.find(0)
            if cut < 0:
                return b""
            data = data[cut + 1:]
            self._lose -= 1
            self.replies_lost += 1
        return self._damage(data)

    def close(self) -> None:
        self.inner.close()


def open_transport(url: str, *, baudrate: int = DEFAULT_BAUD) -> Transport:
    """The transport for ``url`` (see the module docstring)."""
    if not isinstance(url, str) or not url:
        raise LinkError(f"device URL must be a non-empty string, not {url!r}")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "sim":
        return SimTransport(url)
    if scheme == "xdma":
        return XdmaTransport(url)
    return SerialTransport(url, baudrate=baudrate)
