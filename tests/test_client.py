"""The protocol client (retries, window, replay) and the transports' fault
injection, against an in-process protocol-level device (tests/fakedevice.py)."""

import os
import threading

import pytest
from fakedevice import FakeDevice, run_record
from spikeforge.client import Client
from spikeforge.contract.framing import Frame
from spikeforge.contract.payloads import (
    pack_error,
    pack_read,
    pack_read_reply,
    pack_run,
    pack_write,
    unpack_read_reply,
    unpack_run_reply,
)
from spikeforge.contract.protocol import Command, ErrorCode
from spikeforge.errors import DeviceBusy, DeviceReplyError, LinkClosed, LinkError
from spikeforge.transport import FaultyTransport, XdmaTransport, open_transport


def test_request_reply_and_order_in_a_window():
    dev = FakeDevice()
    client = Client(dev, timeout=0.05, window=4)
    writes = [(Command.WRITE, pack_write(8 * i, list(range(i, i + 8)))) for i in range(40)]
    assert list(client.pipeline(writes)) == [b""] * 40
    reads = [(Command.READ, pack_read(8 * i, 8)) for i in range(40)]
    got = [unpack_read_reply(r, 8) for r in client.pipeline(reads)]
    assert got == [list(range(i, i + 8)) for i in range(40)]
    assert dev.executed[Command.WRITE] == 40 and dev.executed[Command.READ] == 40
    assert client.stats["retries"] == 0 and client.stats["stray_replies"] == 0


def test_error_reply_raises_with_code_and_message():
    client = Client(FakeDevice(words=16), timeout=0.05)
    with pytest.raises(DeviceReplyError) as info:
        client.request(Command.READ, pack_read(10, 8))
    assert info.value.code == ErrorCode.ADDRESS_OUT_OF_RANGE
    assert str(info.value) == ("the device refused READ: ADDRESS_OUT_OF_RANGE (an address outside "
                                "the device's memory map, or a read-only one): out of range")
    with pytest.raises(DeviceReplyError, match="refused command 0x33: UNKNOWN_COMMAND"):
        client.request(0x33)


def test_lost_reply_is_replayed_not_executed_twice():
    dev = FakeDevice()
    link = FaultyTransport(dev)
    client = Client(link, timeout=0.02)
    link.lose_replies(2)  # the first answer and the first replay vanish
    reply = client.request(Command.RUN, pack_run([[(1, 1), (2, 1)], []]))
    assert [run_record(r[0]) for r in unpack_run_reply(reply, 2)] == [(2, 0), (0, 0)]
    assert dev.executed[Command.RUN] == 1 and dev.replays == 2
    assert client.stats["retries"] == 2 and link.replies_lost == 2
    # The next RUN is a new request (new seq): executed.
    reply = client.request(Command.RUN, pack_run([[(3, 1)]]))
    assert run_record(unpack_run_reply(reply, 1)[0][0]) == (1, 1)


def test_silent_device_gives_a_link_error_after_the_retries():
    dev = FakeDevice(mute=True)
    client = Client(dev, timeout=0.01, retries=3)
    with pytest.raises(LinkError, match=r"fake://: no reply to OPEN \(seq 0\) after 4 attempts"):
        client.request(Command.INFO)
    assert dev.executed[Command.OPEN] == 1 and dev.executed[Command.INFO] == 0
    assert dev.replays == 3  # the retried OPEN: answered from the cache, not run again


def test_closed_link_raises_at_once():
    dev = FakeDevice()
    dev.close()
    with pytest.raises(LinkClosed, match="fake device closed"):
        Client(dev, timeout=10).request(Command.INFO)


@pytest.mark.parametrize("seed", range(4))
def test_every_request_completes_exactly_once_over_a_noisy_link(seed):
    """Bytes dropped and bits flipped both ways: every RUN is executed once, in
    order, and every WRITE lands (reads back intact)."""
    dev = FakeDevice()
    link = FaultyTransport(dev, drop_rate=0.002, flip_rate=0.002, seed=seed)
    client = Client(link, timeout=0.01, retries=50, window=4)
    words = [(i * 2654435761) & 0xFFFF_FFFF_FFFF for i in range(1024)]
    writes = [(Command.WRITE, pack_write(64 * i, words[64 * i:64 * i + 64])) for i in range(16)]
    assert list(client.pipeline(writes)) == [b""] * 16
    for n in range(30):
        reply = client.request(Command.RUN, pack_run([[(0, 1)] * n]))
        assert run_record(unpack_run_reply(reply, 1)[0][0]) == (n, n)
    assert dev.executed[Command.RUN] == 30
    got = [w for r in client.pipeline((Command.READ, pack_read(64 * i, 64)) for i in range(16))
           for w in unpack_read_reply(r, 64)]
    assert got == words
    assert link.dropped + link.flipped > 0 and client.stats["retries"] > 0


def test_faulty_transport_rejects_bad_rates():
    with pytest.raises(ValueError, match=r"drop_rate must be in \[0, 1\), not 1.5"):
        FaultyTransport(FakeDevice(), drop_rate=1.5)


def test_open_transport_errors_name_the_url():
    with pytest.raises(LinkError, match=r"cannot open '/nonexistent/tty0'"):
        open_transport("/nonexistent/tty0")
    with pytest.raises(LinkError, match=r"non-empty string, not ''"):
        open_transport("")
    with pytest.raises(LinkError, match=r"cannot open 'xdma:///nonexistent/xdma0'"):
        open_transport("xdma:///nonexistent/xdma0")


def test_xdma_transport_moves_bytes_through_named_pipes(tmp_path):
    base = tmp_path / "xdma0"
    h2c, c2h = f"{base}_h2c_0", f"{base}_c2h_0"
    os.mkfifo(h2c)
    os.mkfifo(c2h)

    def echo():  # the "card": echoes h2c to c2h, upper-cased
        with open(c2h, "wb", buffering=0) as out, open(h2c, "rb", buffering=0) as inp:
            while data := inp.read(4096):
                out.write(data.upper())

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    link = XdmaTransport(f"xdma://{base}")
    link.write(b"spikes")
    got = b""
    while len(got) < 6:
        got += link.read(1.0)
    assert got == b"SPIKES"
    link.close()
    thread.join(2)
    assert not thread.is_alive()


def test_session_opened_first_and_other_sessions_ignored():
    """The first request opens a session; a reply in another session's form (a
    late reply to an earlier client's request with the same seq) is ignored; a
    new OPEN ends the session, and the device drops the old session's frames."""
    dev = FakeDevice(words=16)
    client = Client(dev, timeout=0.05, retries=2)
    client.request(Command.WRITE, pack_write(3, [7]))
    assert client.session == 1 and dev.executed[Command.OPEN] == 1
    # A stale reply for the next seq, in the open form and in session 9's form.
    seq = client._seq
    dev.outbox += Frame(0x83, seq, pack_read_reply([99])).encode()
    dev.outbox += Frame(0x83, seq, pack_read_reply([98]), session=9).encode()
    assert unpack_read_reply(client.request(Command.READ, pack_read(3, 1))) == [7]
    assert client.stats["stray_replies"] == 1 and client.dropped[ErrorCode.BAD_CRC] == 1
    old = client.session
    assert client.open() == old + 1
    dev.write(Frame(Command.WRITE, 77, pack_write(3, [5]), session=old).encode())
    dev.write(Frame(Command.WRITE, 78, pack_write(3, [6])).encode())  # open form
    assert dev.decoder.dropped[ErrorCode.BAD_CRC] == 1 and dev.stale == 1
    assert unpack_read_reply(client.request(Command.READ, pack_read(3, 1))) == [7]


def test_busy_device_raises_at_once():
    """An open-form ERROR BUSY (what the simulated board sends a second client)."""
    dev = FakeDevice(mute=True)
    dev.outbox += Frame(0xFF, 0, pack_error(ErrorCode.BUSY)).encode()
    client = Client(dev, timeout=5.0, retries=0)
    with pytest.raises(DeviceBusy, match=r"^fake://: the device is in use by another client$"):
        client.request(Command.INFO)
