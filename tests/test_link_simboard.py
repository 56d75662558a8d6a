"""System test of the simulated board (Verilator build of the SoC + the C++
harness) over a plain TCP socket with the wire protocol of spikeforge.contract:
INFO, loading and reading back compiled random networks, RUN against the golden
model, and the faults of issue 6 (garbage, bad CRC, truncated and oversized
frames, unknown commands, out-of-range addresses, a replayed RUN): the device
keeps answering, no RUN is applied twice, the weights stay intact."""

from __future__ import annotations

import json
import random
import signal

import pytest
from linkutil import RawClient, read_requests, write_requests
from netgen import random_input, random_network
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import FitError, Region
from spikeforge.contract.framing import Frame, cobs_encode
from spikeforge.contract.harness import decode_step, expected, input_events
from spikeforge.contract.info import ENGINE_BASE, config_hash
from spikeforge.contract.payloads import (
    pack_read,
    pack_run,
    pack_write,
    unpack_error,
    unpack_read_reply,
    unpack_run_reply,
)
from spikeforge.contract.protocol import ERROR_REPLY, Command, ErrorCode, reply_cmd
from spikeforge.golden.integer import Format
from spikeforge.sim.rtl import config_named
from spikeforge.sim.simboard import SimBoard
from spikeforge.sim.verilator import missing_tools

_missing = missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                                + ", ".join(_missing) if _missing else "")

CONFIG = config_named("tiny")



def _networks(rng, count):
    fmt = CONFIG.fmt
    nets = []
    while len(nets) < count:
        net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=2, max_size=8,
                             fmt=Format(w_bits=fmt.w_bits, u_bits=fmt.u_bits,
                                        frac_bits=fmt.frac_bits, in_bits=fmt.in_bits))
        try:
            nets.append((net, compile_network(net, CONFIG)))
        except FitError:
            continue
    return nets


def _load(client, image, seq):
    client.pipelined(write_requests(image.writes, start_seq=seq))


def _read_back(client, image, seq, skip_membranes=False):
    shift = CONFIG.lane_bits + CONFIG.addr_bits
    stored = {a: w for a, w in image.writes
              if not (skip_membranes and a >> shift == Region.MEMBRANES)}
    pairs = read_requests(stored, start_seq=seq)
    replies = client.pipelined([f for f, _ in pairs])
    got = {}
    for (_, addresses), reply in zip(pairs, replies, strict=True):
        got.update(zip(addresses, unpack_read_reply(reply.payload, len(addresses)),
                       strict=True))
    return got


@pytest.fixture(scope="module")
def board():
    with SimBoard(CONFIG) as b:
        yield b


def test_simboard_info_load_run(board):
    client = RawClient(board.port)
    info = json.loads(client.ok(Frame(Command.INFO, 1)))
    assert info["device"] == "spikeforge" and info["config_hash"] == config_hash(CONFIG)
    assert info["engine_base"] == ENGINE_BASE and info["link"] == "stream"
    rng = random.Random(3)
    for n, (net, image) in enumerate(_networks(rng, 3)):
        _load(client, image, seq=10)
        assert _read_back(client, image, seq=60) == dict(image.writes)
        client.ok(Frame(Command.WRITE, 90, pack_write(ENGINE_BASE, [n % 2])))  # FLAGS
        assert client.ok(Frame(Command.RESET, 91)) == b""
        x = random_input(rng, net, 6, 1)[:, 0, :]
        want, _ = expected(net, x)
        steps = [input_events(row) for row in x.tolist()]
        got = []
        for half, seq in ((steps[:3], 92), (steps[3:], 93)):
            got += unpack_run_reply(client.ok(Frame(Command.RUN, seq, pack_run(half))),
                                    len(half))
        for t, (records, w) in enumerate(zip(got, want, strict=True)):
            decoded = decode_step(records, net, image)
            if n % 2:
                assert decoded == w, (n, t)
            else:  # FLAGS bit 0 clear: output values only
                assert (decoded["values"], decoded["out_spikes"]) == \
                    (w["values"], w["out_spikes"]), (n, t)
                assert not any(decoded["spikes"].values())
    client.close()


def test_simboard_faults(board):
    """Garbage, bad CRC, truncated, oversized, unknown commands, out-of-range addresses
    and a replayed RUN: every request still answered, counters exact, no double RUN,
    weights intact (also across a reconnect)."""
    rng = random.Random(11)
    (net, image), = _networks(rng, 1)
    client = RawClient(board.port)
    client.send_raw(b"\0")  # a fresh start whatever the line held
    _load(client, image, seq=20)
    client.ok(Frame(Command.WRITE, 80, pack_write(ENGINE_BASE, [0])))
    assert client.ok(Frame(Command.RESET, 81)) == b""
    before = client.registers(82)
    x = random_input(rng, net, 4, 1)[:, 0, :]
    want, _ = expected(net, x)
    run = Frame(Command.RUN, 83, pack_run([input_events(row) for row in x.tolist()]))
    first = client.ok(run)
    again = client.request(run)  # a retry (the host lost the reply): from the cache
    assert again.payload == first and again.cmd == reply_cmd(Command.RUN)
    outputs = unpack_run_reply(first, len(x))
    for records, w in zip(outputs, want, strict=True):
        got = decode_step(records, net, image)
        assert (got["values"], got["out_spikes"]) == (w["values"], w["out_spikes"])
    after_run = client.registers(84)
    assert after_run["STEPS"] == before["STEPS"] + len(x)  # executed once
    assert after_run["REPLAYS"] == before["REPLAYS"] + 1

    # Everything but the membranes (the RUN changed those) must survive.
    shift = CONFIG.lane_bits + CONFIG.addr_bits
    kept = {a: w for a, w in image.writes if a >> shift != Region.MEMBRANES}

    # The barrage: each bad frame is followed by a good request that must be answered.
    weights = CONFIG.address(Region.WEIGHTS, 1, 5)
    counters = CONFIG.address(Region.COUNTERS, 0, 0)
    sent_before = dict(client.sent.dropped), client.sent.received
    errors = 0
    seq = 100
    for i in range(12):
        kind = ["garbage", "crc", "truncated", "oversized", "unknown", "range"][i % 6]
        seq += 1
        if kind == "garbage":
            client.send_raw(bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 60)))
                            + b"\0")
        elif kind == "crc":
            body = bytearray(Frame(Command.WRITE, seq, pack_write(weights, [1])).to_body())
            body[-1] ^= 0x40
            client.send_raw(cobs_encode(bytes(body)) + b"\0")
        elif kind == "truncated":
            wire = Frame(Command.WRITE, seq, pack_write(weights, [2, 3])).encode()
            client.send_raw(wire[:len(wire) // 2] + b"\0")
        elif kind == "oversized":
            client.send_raw(bytes(rng.randrange(1, 256) for _ in range(1200)) + b"\0")
        elif kind == "unknown":
            reply = client.request(Frame(0x33 + i, seq))
            assert reply.cmd == ERROR_REPLY
            assert unpack_error(reply.payload) == (ErrorCode.UNKNOWN_COMMAND, "")
            errors += 1
        else:
            for frame in (Frame(Command.WRITE, seq, pack_write(counters, [9])),
                          Frame(Command.READ, (seq + 100) % 256, pack_read(0x7FFF_FFF0, 4))):
                reply = client.request(frame)
                assert reply.cmd == ERROR_REPLY
                assert unpack_error(reply.payload) == (ErrorCode.ADDRESS_OUT_OF_RANGE, "")
                errors += 1
        # The device still answers (a new seq each time, so never from the cache).
        assert client.ok(Frame(Command.INFO, (seq + 50) % 256)).startswith(b"{")
    regs = client.registers(200)
    dropped = {code: n - sent_before[0][code] for code, n in client.sent.dropped.items()}
    assert dropped[ErrorCode.BAD_CRC] >= 2 and dropped[ErrorCode.BAD_LENGTH] >= 2
    assert dropped[ErrorCode.TOO_LARGE] == 2
    for name, code in (("DROP_BAD_CRC", ErrorCode.BAD_CRC),
                       ("DROP_BAD_LENGTH", ErrorCode.BAD_LENGTH),
                       ("DROP_TOO_LARGE", ErrorCode.TOO_LARGE)):
        assert regs[name] - after_run[name] == dropped[code], name
    # Every good frame since (the registers READ included) was counted.
    assert regs["FRAMES_OK"] - after_run["FRAMES_OK"] == client.sent.received - sent_before[1]
    assert regs["ERRORS"] - after_run["ERRORS"] == errors
    assert regs["STEPS"] == after_run["STEPS"]  # nothing ran
    assert _read_back(client, image, seq=210, skip_membranes=True) == kept  # weights intact
    client.close()

    # A new connection sees the same state (the board stays powered).
    client = RawClient(board.port)
    assert _read_back(client, image, seq=230, skip_membranes=True) == kept
    assert client.registers(250)["STEPS"] == regs["STEPS"]
    client.close()


def test_simboard_process_lifecycle():
    """The harness exits on SIGTERM and when its stdin closes; close() reaps it."""
    b = SimBoard(CONFIG).start()
    proc = b.process
    assert b.url == f"socket://127.0.0.1:{b.port}"
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    b.close()
    b = SimBoard(CONFIG).start()
    proc = b.process
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    b.close()
    with SimBoard(CONFIG) as b:
        proc = b.process
    assert proc.poll() is not None  # terminated and reaped


def test_cli_sim_board():
    """``spikeforge sim-board --config tiny``: prints LISTENING, answers INFO, stops on SIGTERM."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import sys; from spikeforge.cli import main; "
                             "sys.exit(main(['sim-board', '--config', 'tiny', '--quiet']))"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("LISTENING "), line
        client = RawClient(int(line.split()[1]))
        info = json.loads(client.ok(Frame(Command.INFO, 5)))
        assert info["config_hash"] == config_hash(CONFIG)
        client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        proc.stdout.close()


def test_simboard_uart_full_fidelity():
    """The board with the UART PHY simulated bit by bit: load, read back, RUN vs golden
    (the pipelined profile, the ECP5 boards': the only fast test of the UART SoC's
    receive FIFO and its register stage: a WRITE executes while its bytes keep
    arriving, so both fill and drain under backpressure)."""
    rng = random.Random(21)
    (net, image), = _networks(rng, 1)
    with SimBoard(CONFIG, uart=True) as b:
        client = RawClient(b.port)
        info = json.loads(client.ok(Frame(Command.INFO, 1)))
        assert info["link"] == "uart" and info["baud"] == 750_000
        _load(client, image, seq=10)
        assert _read_back(client, image, seq=60) == dict(image.writes)
        client.ok(Frame(Command.RESET, 90))
        x = random_input(rng, net, 4, 1)[:, 0, :]
        want, _ = expected(net, x)
        got = unpack_run_reply(client.ok(Frame(Command.RUN, 91, pack_run(
            [input_events(row) for row in x.tolist()]))), len(x))
        for records, w in zip(got, want, strict=True):
            d = decode_step(records, net, image)
            assert (d["values"], d["out_spikes"]) == (w["values"], w["out_spikes"])
        client.close()


@pytest.mark.slow
def test_link_goodput_bench_is_consistent():
    """The goodput benchmark's figures follow from its clock count (no speed asserted)."""
    from spikeforge.sim.link_bench import uart_goodput

    r = uart_goodput("tiny", frames=2)
    assert r["payload_bytes"] == 2 * (6 + 8 * 127)
    assert r["goodput_fraction"] == pytest.approx(
        r["payload_bytes"] * 10 * r["clocks_per_bit"] / r["clocks"], rel=1e-12)
    assert r["wire_bytes"] * 10 * r["clocks_per_bit"] <= r["clocks"]  # the line's own limit
