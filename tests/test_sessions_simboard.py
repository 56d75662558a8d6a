"""Sessions on the simulated board (issue #32): replies never cross clients, an
abandoned client's backlog neither delays nor reaches the next client, and a
second client gets BUSY at once."""

from __future__ import annotations

import time

import pytest
from linkutil import RawClient
from spikeforge.contract.config import Region
from spikeforge.contract.framing import Frame
from spikeforge.contract.payloads import pack_read, pack_write
from spikeforge.contract.protocol import Command
from spikeforge.device import Device
from spikeforge.errors import DeviceBusy
from spikeforge.sim.rtl import config_named
from spikeforge.sim.simboard import SimBoard
from spikeforge.sim.verilator import missing_tools
from spikeforge.transport import SerialTransport

_missing = missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                                + ", ".join(_missing) if _missing else "")

CONFIG = config_named("tiny")
MARK = CONFIG.address(Region.WEIGHTS, 0, 5)     # a word both clients write
SPAN = CONFIG.address(Region.WEIGHTS, 1, 0)     # 128 words: long READ replies


@pytest.fixture(scope="module")
def board():
    with SimBoard(CONFIG) as b:
        yield b


def _abandon(board, requests: int) -> None:
    """A client that opens a session, sends ``requests`` READs (1 KiB replies) and
    WRITEs of the marker word (values 1, 2, ...) without reading a reply, lets the
    device work on them for a while (its replies in flight), and goes."""
    raw = RawClient(board.port)
    raw.send_raw(b"\0")
    session = raw.open(nonce=0xA5A5)
    frames = []
    for i in range(requests):
        if i % 2:
            frames.append(Frame(Command.WRITE, i % 256, pack_write(MARK, [(i // 2 + 1) % 256]),
                                session))
        else:
            frames.append(Frame(Command.READ, i % 256, pack_read(SPAN, 128), session))
    raw.sock.sendall(b"".join(f.encode() for f in frames))
    time.sleep(0.3)
    raw.sock.close()


def test_abandoned_client_never_reaches_the_next_one(board):
    """3,000 requests left behind: the next client's INFO comes within a second;
    none of its replies is another client's (every READ of the marker returns what
    it wrote, never one of the old client's values or weight words), and nothing
    of the old client executes once the new session is open."""
    _abandon(board, 3000)
    t0 = time.monotonic()
    with Device(SerialTransport(board.url), timeout=2.0) as dev:
        dev.info()
        elapsed = time.monotonic() - t0
        first = dev.read([MARK])
        time.sleep(0.3)
        assert dev.read([MARK]) == first  # no old request ran after the OPEN
        for value in (0x77, 0x78, 0x79):
            dev.client.request(Command.WRITE, pack_write(MARK, [value]))
            for _ in range(100):
                assert dev.read([MARK]) == [value]
        stats = dict(dev.client.stats)
    assert elapsed < 1.0, elapsed
    assert 0 < first[0] < 750, first  # some of the backlog ran, most was dropped
    print(f"abandoned 3000: INFO after {elapsed:.3f} s, marker {first[0]}, stats {stats}")


def test_second_client_gets_busy_at_once(board):
    with Device(SerialTransport(board.url), timeout=2.0) as first:
        first.info()
        t0 = time.monotonic()
        with pytest.raises(DeviceBusy, match=r"the device is in use by another client$"), \
                Device(SerialTransport(board.url), timeout=5.0, retries=0) as second:
            second.info()
        assert time.monotonic() - t0 < 1.0
        first.registers()  # the first client is undisturbed
    with Device(SerialTransport(board.url), timeout=2.0) as third:  # free again
        third.info()
