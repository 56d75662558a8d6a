"""The link at a bit error rate (issue #32, part 3): the retry rule of
``host/client.py`` and the frame sizes of ``host/device.py`` (``FrameSizes``).

Unit tests run against the in-process protocol-level device
(``tests/fakedevice.py``); the system tests stream the digits model's whole
test split (359 samples) over the simulated board through
``FaultyTransport(bit_error_rate=...)``, which flips each bit on its own in
both directions (BER 1e-4 hits a byte with probability about 8e-4).  Each run
must complete bit-exact against the golden model, with retries (so it cannot
pass on a clean link) and with every step executed exactly once (the device's
``STEPS`` register).  The retry counts and times are printed (``-s``); the
1e-3 run is slow.
"""

from __future__ import annotations

import math
import time

import pytest
from fakedevice import FakeDevice, run_record
from spikeforge.client import Client
from spikeforge.contract.payloads import (
    pack_read,
    pack_run,
    pack_write,
    unpack_read_reply,
    unpack_run_reply,
)
from spikeforge.contract.protocol import Command
from spikeforge.demo import shipped_model
from spikeforge.errors import LinkError
from spikeforge.sim.verilator import have_verilator
from spikeforge.transport import FaultyTransport, Transport

needs_verilator = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")


class DamageOnce(Transport):
    """Flips a bit in the middle of the next reply read (its frame is then dropped
    by the host's decoder as damaged, not lost whole)."""

    def __init__(self, inner: Transport):
        self.inner, self.url = inner, inner.url
        self.armed = False

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        if self.armed and len(data) > 4:
            self.armed = False
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:]
        return data

    def close(self) -> None:
        self.inner.close()


# ----------------------------------------------------------------- transport
def test_bit_errors_flip_bits_independently_at_the_rate():
    dev = FakeDevice()
    link = FaultyTransport(dev, bit_error_rate=1e-3, seed=5)
    sent = bytes(range(1, 256)) * 400  # 816 000 bits
    out = bytearray()
    original = dev.write
    dev.write = out.extend
    try:
        link.write(sent)
    finally:
        dev.write = original
    flipped = sum(bin(a ^ b).count("1") for a, b in zip(sent, out, strict=True))
    assert flipped == link.flipped
    assert 700 < flipped < 940  # 816 expected; 4 standard deviations either way


def test_faulty_transport_names_a_bad_bit_error_rate():
    with pytest.raises(ValueError, match=r"bit_error_rate must be in \[0, 1\), not 1.0"):
        FaultyTransport(FakeDevice(), bit_error_rate=1.0)


# --------------------------------------------------------------------- client
def test_a_reply_after_a_lost_one_resends_it_at_once():
    """The device answers in order: the second reply of a window proves the first
    lost, which is re-sent without waiting for a timeout (none is allowed here)."""
    dev = FakeDevice()
    link = FaultyTransport(dev)
    client = Client(link, timeout=30.0, retries=0, window=4)
    client.open()
    link.lose_replies(1)
    writes = [(Command.WRITE, pack_write(8 * i, [i] * 8)) for i in range(4)]
    assert list(client.pipeline(writes)) == [b""] * 4
    assert client.stats["retries"] == 1 and link.replies_lost == 1
    assert dev.memory[:32] == [i for i in range(4) for _ in range(8)]


def test_a_damaged_reply_resends_at_once_and_the_run_is_not_repeated():
    dev = FakeDevice()
    link = DamageOnce(dev)
    client = Client(link, timeout=30.0, retries=0)
    client.open()
    link.armed = True
    reply = client.request(Command.RUN, pack_run([[(1, 1), (2, 1)]]))
    assert run_record(unpack_run_reply(reply, 1)[0][0]) == (2, 0)
    assert dev.executed[Command.RUN] == 1 and dev.replays == 1
    assert client.stats["retries"] == 1 and sum(client.dropped.values()) == 1


def test_a_late_reply_to_an_answered_request_is_a_stray():
    """A timeout shorter than the device: the first send's reply answers the
    request, the re-send's (from the reply cache) is counted and ignored."""

    class Slow(Transport):
        url = "slow://"

        def __init__(self):
            self.inner, self.held, self.armed = FakeDevice(), [], False

        def write(self, data):
            self.inner.write(data)

        def read(self, timeout):
            if not self.armed:
                return self.inner.read(timeout)
            got = self.inner.read(0)
            if got:
                self.held.append(got)
            if len(self.held) < 2:  # the first reply comes only after the re-send's
                time.sleep(min(timeout, 0.01))
                return b""
            out, self.held = b"".join(self.held), []
            return out

        def close(self):
            pass

    link = Slow()
    client = Client(link, timeout=0.01)
    client.open()
    link.armed = True
    reply = client.request(Command.RUN, pack_run([[(0, 1)]]))
    assert run_record(unpack_run_reply(reply, 1)[0][0]) == (1, 0)
    assert client.stats["retries"] == 1
    assert link.inner.executed[Command.RUN] == 1 and link.inner.replays == 1
    # The duplicate is read with the next request and ignored.
    assert unpack_read_reply(client.request(Command.READ, pack_read(0, 1)), 1) == [0]
    assert client.stats["stray_replies"] == 1


def test_a_silent_device_fails_after_the_retries_with_the_waits_doubling():
    dev = FakeDevice(mute=True)
    client = Client(dev, timeout=0.05, retries=2)
    with pytest.raises(LinkError, match=r"no reply to OPEN \(seq 0\) after 3 attempts "
                                        r"\(3 timeouts, 0.15 s of waiting\)"):
        client.request(Command.READ, pack_read(0, 1))
    # Once a reply has been timed, the first wait is short and doubles.
    client = Client(FakeDevice(), timeout=1.0)
    client.request(Command.READ, pack_read(0, 1))
    waits = [client._wait(Command.READ, k, 0, 1.0) for k in range(8)]
    assert waits[0] < 0.1 and waits[-1] == 1.0
    assert all(b in (2 * a, 1.0) for a, b in zip(waits, waits[1:], strict=False))


def test_a_noisy_command_keeps_its_first_wait_for_the_losses_it_explains():
    client = Client(FakeDevice(), timeout=1.0)
    client.request(Command.RUN, pack_run([[]]))
    for lost in [True, False] * 20:  # half of the sends lost
        client._count(Command.RUN, lost)
    free = client._explained(Command.RUN)
    assert 15 <= free <= 25  # 0.5 ** 20 = 1e-6
    first = client._wait(Command.RUN, 0, free, 1.0)
    assert client._wait(Command.RUN, free, free, 1.0) == first
    assert client._wait(Command.RUN, free + 1, free, 1.0) == 2 * first


@pytest.mark.parametrize("seed", range(3))
def test_every_request_completes_exactly_once_at_a_bit_error_rate(seed):
    dev = FakeDevice()
    link = FaultyTransport(dev, bit_error_rate=1e-3, seed=seed)
    client = Client(link, timeout=0.5, window=8)
    words = [(i * 2654435761) & 0xFFFF_FFFF_FFFF for i in range(512)]
    writes = [(Command.WRITE, pack_write(16 * i, words[16 * i:16 * i + 16])) for i in range(32)]
    assert list(client.pipeline(writes)) == [b""] * 32
    for n in range(20):
        reply = client.request(Command.RUN, pack_run([[(0, 1)] * n]))
        assert run_record(unpack_run_reply(reply, 1)[0][0]) == (n, n)
    assert dev.executed[Command.RUN] == 20
    got = [w for r in client.pipeline((Command.READ, pack_read(16 * i, 16)) for i in range(32))
           for w in unpack_read_reply(r, 16)]
    assert got == words
    assert link.flipped > 0 and client.stats["retries"] > 0


# ---------------------------------------------------------------- frame sizes
def test_the_error_rate_estimate_follows_the_link():
    clean = Client(FakeDevice(), timeout=0.5)
    noisy = Client(FaultyTransport(FakeDevice(), bit_error_rate=1e-3, seed=3), timeout=0.5)
    for client in (clean, noisy):
        for _ in client.pipeline((Command.READ, pack_read(0, 8)) for _ in range(300)):
            pass
    assert clean.error_rate() == 0.0
    per_byte = 1 - (1 - 1e-3) ** 8  # 8.0e-3
    assert per_byte / 2 < noisy.error_rate() < per_byte * 2


def test_requests_are_cut_to_the_frame_budget():
    """A clean link: 127 words per WRITE; at 8e-4 errors per byte (BER 1e-4), a
    WRITE and its reply hold ln(4/3) / 8e-4 = 360 bytes: 42 words."""
    from spikeforge.device import SURVIVAL, Device

    dev = Device(FakeDevice())
    words = [(a, a * 3) for a in range(1000)]
    dev.write(words)
    assert dev.transport.executed[Command.WRITE] == 8  # ceil(1000 / 127)
    assert dev.frame_budget() == float("inf") and dev.link_stats()["frame_budget"] is None
    dev.client.error_rate = lambda: 8e-4
    assert round(dev.frame_budget()) == round(math.log(1 / SURVIVAL) / 8e-4) == 360
    dev.write(words)
    assert dev.transport.executed[Command.WRITE] == 8 + 24  # ceil(1000 / 42)
    assert dev.read([a for a, _ in words]) == [w for _, w in words]
    assert dev.transport.executed[Command.READ] == 24
    assert dev.link_stats()["frame_budget"] == 360


# -------------------------------------------------------------- digits, noisy
def digits_over_noise(bit_error_rate: float, seed: int = 1) -> tuple[dict, dict, float]:
    """The digits test split through the simulated board at ``bit_error_rate``:
    the evaluation report, the link's statistics (with ``runs``, the RUN
    requests, and ``steps``, the device's STEPS register) and the seconds."""
    from spikeforge.device import Device
    from spikeforge.evaluate import evaluate_on_device
    from spikeforge.golden.modelfile import load_model
    from spikeforge.transport import SimTransport

    net, meta = load_model(shipped_model("digits"))
    link = FaultyTransport(SimTransport("sim://digits"), bit_error_rate=bit_error_rate,
                           seed=seed)
    with Device(link, timeout=2.0) as dev:
        runs = 0
        request = dev.client.request

        def counted(cmd, payload=b"", **kwargs):
            nonlocal runs
            runs += cmd == Command.RUN
            return request(cmd, payload, **kwargs)

        dev.client.request = counted
        start = time.monotonic()
        report = evaluate_on_device(dev, net, meta)
        seconds = time.monotonic() - start
        stats = {**dev.link_stats(), "runs": runs, "steps": dev.registers()["steps"],
                 "bits_flipped": link.flipped}
    print(f"\ndigits at BER {bit_error_rate:g}: {report['samples']} samples in {seconds:.1f} s, "
          f"{stats}")
    return report, stats, seconds


def check_noisy_run(report: dict, stats: dict) -> None:
    assert report["samples"] == 359 and report["bit_exact"] is True
    assert report["agreement"] == 1.0
    assert stats["bits_flipped"] > 0 and stats["retries"] > 0
    assert stats["steps"] == report["samples"] * report["timesteps"]  # each step once


@needs_verilator
def test_digits_at_a_bit_error_rate_of_1e_4_completes_bit_exact():
    report, stats, _ = digits_over_noise(1e-4)
    check_noisy_run(report, stats)


@needs_verilator
@pytest.mark.slow
def test_digits_at_a_bit_error_rate_of_1e_3_completes_bit_exact():
    report, stats, _ = digits_over_noise(1e-3)
    check_noisy_run(report, stats)
