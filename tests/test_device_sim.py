"""System tests: the host runtime against the simulated board (a Verilator
build of the SoC top served on TCP), through the very code users run.

Covers: random networks bit-exact against the golden model; the same code
over a pty and over XDMA-style named pipes (only the transport differs); a
model that does not fit is refused before anything is written; faults (garbage
between frames, bad CRC, truncated, oversized, unknown command, out-of-range
address, a noisy link dropping and flipping bytes, a lost RUN reply, the board
killed mid-stream): the device keeps answering, no RUN is applied twice, the
weights read back intact, and every stream either completes bit-exact or fails
with a clear error.
"""

from __future__ import annotations

import os
import pty
import random
import select
import socket
import threading
import time
import tty

import pytest
import torch
from linkutil import RawClient
from netgen import random_input, random_network
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import FitError, Region
from spikeforge.contract.framing import DELIMITER, MAX_ENCODED_FRAME, Frame, cobs_encode
from spikeforge.contract.harness import expected_from_trace, input_events
from spikeforge.contract.payloads import pack_read, pack_write
from spikeforge.contract.protocol import Command, ErrorCode
from spikeforge.device import ENGINE_BASE, Device
from spikeforge.errors import DeviceReplyError, LinkError
from spikeforge.golden.integer import INPUT, LIFLayer, Network, Projection
from spikeforge.sim.rtl import config_named
from spikeforge.sim.verilator import have_verilator
from spikeforge.transport import FaultyTransport, SerialTransport, XdmaTransport

pytestmark = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")

CONFIG = "tiny"


@pytest.fixture(scope="module")
def board():
    from spikeforge.sim.simboard import SimBoard

    b = SimBoard(CONFIG)
    b.start()
    yield b
    b.close()


def open_board(board, **kwargs) -> Device:
    kwargs.setdefault("timeout", 2.0)
    return Device(SerialTransport(board.url), **kwargs)


def fitting_network(rng: random.Random, config) -> Network:
    while True:
        net = random_network(rng, max_ssm=0, ssm_prob=0.0, fmt=config.fmt,
                             max_lif=config.max_layers,
                             max_size=min(config.max_neurons, config.max_inputs))
        try:
            compile_network(net, config)
            return net
        except FitError:
            continue


def check_bit_exact(dev: Device, net: Network, x: torch.Tensor) -> None:
    """Every step's output values and spikes, and every layer's state after each
    sample, equal the golden model's."""
    got = dev.run(x, membranes=True)
    trace = net.run(x)
    assert torch.equal(got.outputs, trace.outputs[net.output])
    for b in range(x.shape[1]):
        steps, state = expected_from_trace(net, trace, b)
        assert got.values[:, b].tolist() == [s["values"] for s in steps]
        assert got.spikes[:, b].tolist() == [s["out_spikes"] for s in steps]
        assert got.membranes[b] == state


def test_info_describes_the_build(board):
    with open_board(board) as dev:
        info = dev.info()
        assert info["device"] == "spikeforge"
        assert dev.config == config_named(CONFIG)
        assert info["link"] == "stream"


@pytest.mark.parametrize("seed", range(6))
def test_random_networks_bit_exact(board, seed):
    rng = random.Random(seed)
    config = config_named(CONFIG)
    with open_board(board) as dev:
        for _ in range(3):
            net = fitting_network(rng, config)
            dev.load(net)
            x = random_input(rng, net, steps=rng.randint(1, 12), batch=3)
            check_bit_exact(dev, net, x)


def test_counters_count_the_steps(board):
    rng = random.Random(7)
    config = config_named(CONFIG)
    with open_board(board) as dev:
        net = fitting_network(rng, config)
        dev.load(net)
        before = dev.registers()["steps"]
        dev.run(random_input(rng, net, steps=5, batch=1)[:, 0])
        counters = dev.counters()
        assert counters["steps"] == 5 and counters["step_cycles"] > 0
        assert dev.registers()["steps"] == before + 5
        assert set(counters["layers"]) == {layer.name for layer in net.layers}


def test_a_model_that_does_not_fit_is_refused_before_any_write(board):
    config = config_named(CONFIG)
    n = config.max_neurons + 1
    zeros = torch.zeros(n, dtype=torch.int64)
    too_big = Network(input_size=4, input_kind="spike", output="big", fmt=config.fmt,
                      layers=[LIFLayer(name="big", size=n, alpha=zeros, theta=zeros + 1,
                                       bias=zeros, inputs=[Projection(
                                           INPUT, torch.ones(n, 4, dtype=torch.int64))])])
    with open_board(board) as dev:
        dev.info()
        frames = dev.registers()["frames_ok"]
        with pytest.raises(FitError, match=r"layer 'big' has 17 neurons, more than "
                                           r"max_neurons=16"):
            dev.load(too_big)
        # Only the one READ of the registers below reached the device.
        assert dev.registers()["frames_ok"] == frames + 1


# ------------------------------------------------------------ transports
def _pump(sock: socket.socket, read_fd: int, write_fd: int, stop: threading.Event) -> None:
    """Copy bytes both ways between a socket and a pair of file descriptors."""
    sock.setblocking(False)
    while not stop.is_set():
        ready, _, _ = select.select([sock, read_fd], [], [], 0.05)
        try:
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                os.write(write_fd, data)
            if read_fd in ready:
                data = os.read(read_fd, 65536)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            return


def assert_same(got: tuple, want: tuple) -> None:
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


def _run_through(dev: Device, net: Network, x: torch.Tensor):
    dev.load(net)
    result = dev.run(x, membranes=True)
    return result.outputs, result.values, result.spikes, result.membranes


def test_the_transport_is_the_only_difference(board, tmp_path):
    """The same Device code over TCP, over a pty (a serial port) and over
    XDMA-style named pipes gives identical results, equal to the golden model."""
    rng = random.Random(11)
    net = fitting_network(rng, config_named(CONFIG))
    x = random_input(rng, net, steps=6, batch=2)
    with open_board(board) as dev:
        over_tcp = _run_through(dev, net, x)
    check = net.run(x)
    assert torch.equal(over_tcp[0], check.outputs[net.output])

    # A pty: the board's byte stream on the master side, the Device on /dev/pts/N.
    master, slave = pty.openpty()
    tty.setraw(slave)
    stop = threading.Event()
    sock = socket.create_connection(("127.0.0.1", board.port))
    pump = threading.Thread(target=_pump, args=(sock, master, master, stop), daemon=True)
    pump.start()
    try:
        with Device(SerialTransport(os.ttyname(slave)), timeout=2.0) as dev:
            over_pty = _run_through(dev, net, x)
    finally:
        stop.set()
        pump.join(2)
        sock.close()
        os.close(master)
        os.close(slave)
    assert_same(over_pty, over_tcp)

    # XDMA: /dev/xdmaN_h2c_0 and _c2h_0 played by named pipes.
    base = tmp_path / "xdma0"
    h2c, c2h = f"{base}_h2c_0", f"{base}_c2h_0"
    os.mkfifo(h2c)
    os.mkfifo(c2h)
    stop = threading.Event()
    sock = socket.create_connection(("127.0.0.1", board.port))

    def card():
        out = os.open(c2h, os.O_WRONLY)   # waits for the host to open its read end
        inp = os.open(h2c, os.O_RDONLY)
        try:
            _pump(sock, inp, out, stop)
        finally:
            os.close(out)
            os.close(inp)

    thread = threading.Thread(target=card, daemon=True)
    thread.start()
    try:
        with Device(XdmaTransport(f"xdma://{base}"), timeout=2.0) as dev:
            over_xdma = _run_through(dev, net, x)
    finally:
        stop.set()
        thread.join(2)
        sock.close()
    assert_same(over_xdma, over_tcp)


# ----------------------------------------------------------------- faults
def test_bad_frames_are_dropped_and_counted_and_the_device_keeps_answering(board):
    with open_board(board) as dev:
        dev.info()
        before = dev.registers()
    raw = RawClient(board.port)
    session = raw.open()  # (a Device has opened sessions on this board)
    good = Frame(Command.INFO, 42, session=session).encode()
    body = bytearray(Frame(Command.READ, 43, pack_read(0, 1), session=session).to_body())
    body[-1] ^= 0x5A  # bad CRC
    rng = random.Random(3)
    garbage = bytes(rng.randrange(1, 256) for _ in range(300))
    wire = (garbage + DELIMITER                       # garbage between frames
            + cobs_encode(bytes(body)) + DELIMITER     # bad CRC
            + good[:5] + DELIMITER                     # truncated
            + b"\x01" * (MAX_ENCODED_FRAME + 40) + DELIMITER  # oversized
            + good)
    raw.send_raw(wire)
    (reply,) = raw.replies(1)
    raw.close()  # asserts nothing else came back
    assert (reply.cmd, reply.seq) == (Command.INFO | 0x80, 42)
    with open_board(board) as dev:
        after = dev.registers()
    assert after["drop_bad_crc"] == before["drop_bad_crc"] + 1
    assert after["drop_too_large"] == before["drop_too_large"] + 1
    assert after["drop_bad_length"] >= before["drop_bad_length"] + 2  # garbage, truncated


def test_unknown_commands_and_bad_addresses_get_error_replies(board):
    config = config_named(CONFIG)
    rng = random.Random(5)
    net = fitting_network(rng, config)
    with open_board(board) as dev:
        dev.load(net)
        shift = config.lane_bits + config.addr_bits
        image = [a for a, _ in compile_network(net, config).writes
                 if a >> shift in (Region.WEIGHTS, Region.PARAMS)]
        last = config.address(Region.PARAMS, 0, config.neuron_depth - 1)
        before = dev.read([*image, last])
        with pytest.raises(DeviceReplyError) as info:
            dev.client.request(0x3C)
        assert info.value.code == ErrorCode.UNKNOWN_COMMAND
        assert config.neuron_depth < 1 << config.addr_bits  # so the next one is a hole
        bad = config.address(Region.PARAMS, 0, config.neuron_depth)
        for request in ((Command.READ, pack_read(bad, 1)),
                        (Command.WRITE, pack_write(bad - 1, [1, 2])),
                        (Command.READ, pack_read(ENGINE_BASE + 1000, 1)),
                        (Command.WRITE, pack_write(config.address(Region.COUNTERS), [0]))):
            with pytest.raises(DeviceReplyError) as info:
                dev.client.request(*request)
            assert info.value.code == ErrorCode.ADDRESS_OUT_OF_RANGE, request
        # A refused WRITE changed nothing (not even its first, valid word).
        assert dev.read([*image, last]) == before
        check_bit_exact(dev, net, random_input(rng, net, steps=4, batch=2))


@pytest.mark.parametrize("seed", range(2))
def test_a_noisy_link_loses_nothing(board, seed):
    """Bytes dropped and bits flipped both ways at a set rate: the load verifies,
    every stream is bit-exact, and the device executed exactly the steps asked."""
    rng = random.Random(100 + seed)
    net = fitting_network(rng, config_named(CONFIG))
    x = random_input(rng, net, steps=8, batch=4)
    link = FaultyTransport(SerialTransport(board.url), drop_rate=0.001, flip_rate=0.001,
                           seed=seed)
    with Device(link, timeout=0.1, retries=100) as dev:
        dev.load(net)
        before = dev.registers()["steps"]
        check_bit_exact(dev, net, x)
        assert dev.registers()["steps"] == before + 8 * 4
        assert dev.client.stats["retries"] > 0
    assert link.dropped + link.flipped > 0


def test_a_lost_run_reply_is_replayed_not_run_twice(board):
    rng = random.Random(9)
    net = fitting_network(rng, config_named(CONFIG))
    x = random_input(rng, net, steps=5, batch=1)[:, 0]
    link = FaultyTransport(SerialTransport(board.url))
    with Device(link, timeout=0.2) as dev:
        dev.load(net)
        dev.reset()
        before = dev.registers()
        link.lose_replies(1)
        steps = [input_events(row) for row in x.tolist()]
        records = dev.run_steps(steps)
        after = dev.registers()
        assert after["steps"] == before["steps"] + 5
        assert after["replays"] == before["replays"] + 1
        assert link.replies_lost == 1
        # The outputs are those of one run from the reset state.
        dev.reset()
        assert dev.run_steps(steps) == records


def test_the_board_killed_mid_stream_is_a_clear_error_not_a_hang():
    from spikeforge.sim.simboard import SimBoard

    rng = random.Random(13)
    net = fitting_network(rng, config_named(CONFIG))
    board = SimBoard(CONFIG)
    board.start()
    try:
        dev = open_board(board, timeout=0.5, retries=2)
        dev.load(net)
        x = random_input(rng, net, steps=4, batch=40)
        start = time.monotonic()
        with pytest.raises(LinkError):
            for i, _ in enumerate(dev.stream(x[:, b] for b in range(x.shape[1]))):
                if i == 3:
                    board.process.kill()
        assert time.monotonic() - start < 10
        dev.close()
    finally:
        board.close()


def test_the_bit_level_uart_board_gives_the_same_results():
    """``sim://CONFIG?uart=1``: the byte stream goes through the UART PHY bit by
    bit (the board's own RX/TX and a C++ UART model); same results."""
    from spikeforge.device import open as open_device

    rng = random.Random(21)
    net = fitting_network(rng, config_named(CONFIG))
    x = random_input(rng, net, steps=5, batch=2)
    with open_device(f"sim://{CONFIG}?uart=1", timeout=5.0) as dev:
        assert dev.info()["link"] == "uart"
        dev.load(net)
        check_bit_exact(dev, net, x)
        assert dev.registers()["drop_bad_crc"] == 0


def test_sim_url_options_are_checked():
    from spikeforge.device import open as open_device

    with pytest.raises(LinkError, match=r"'sim://tiny\?baud=9600': unknown option 'baud'"):
        open_device("sim://tiny?baud=9600")
