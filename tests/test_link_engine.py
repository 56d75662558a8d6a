"""The byte-stream SoC (decoder, command engine, encoder, NPU core) on Amaranth's
simulator: every command and error path of docs/device.md, checked with
the wire protocol of spikeforge.contract and against the golden model."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from linkutil import decode_replies, read_requests, run_byte_stream, write_requests
from netgen import random_input, random_network
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import CoreConfig, Region, address_map
from spikeforge.contract.framing import Frame
from spikeforge.contract.harness import (
    decode_membranes,
    decode_step,
    expected,
    input_events,
    membrane_reads,
)
from spikeforge.contract.info import ENGINE_BASE, REGISTERS, config_hash, device_info
from spikeforge.contract.payloads import (
    pack_read,
    pack_run,
    pack_write,
    unpack_error,
    unpack_read_reply,
    unpack_run_reply,
)
from spikeforge.contract.protocol import ERROR_REPLY, Command, ErrorCode, reply_cmd
from spikeforge.contract.timing import COMPACT, PIPELINED
from spikeforge.gateware.link import SoC
from spikeforge.golden.integer import Format


def _config(net, lanes):
    f = net.fmt
    return CoreConfig(lanes=lanes,
                      fmt=dataclasses.replace(f, acc_bits=48),
                      max_layers=len(net.layers), max_edges=8, max_neurons=6, max_inputs=6,
                      max_fanin=64, neuron_depth=8, weight_depth=64)


def _net(seed):
    rng = random.Random(seed)
    net = random_network(rng, max_ssm=0, ssm_prob=0.0, max_lif=2, max_size=6,
                         fmt=Format(u_bits=rng.randint(4, 12), w_bits=rng.randint(2, 8),
                                    frac_bits=rng.randint(0, 8), in_bits=rng.randint(2, 8)))
    return rng, net


def _reg(name):
    return ENGINE_BASE + REGISTERS.index(name)


def _ok(reply, request):
    assert (reply.cmd, reply.seq) == (reply_cmd(request.cmd), request.seq), (reply, request)
    return reply.payload


def _error(reply, request, code):
    assert (reply.cmd, reply.seq) == (ERROR_REPLY, request.seq), (reply, request)
    assert unpack_error(reply.payload) == (code, "")


def _steps(x):
    return [input_events(row) for row in x.tolist()]


@pytest.mark.parametrize("seed", range(4))
def test_engine_load_read_run_reset(seed):
    """INFO; WRITE the image, READ it all back; RUN (records vs the golden model, with
    and without hidden spikes); the reply cache; RESET (membranes zero, weights kept);
    the registers.  Seed 3: the pipelined profile (``PIPELINED``, the ECP5 boards':
    the host request and the read data through registers per group of 4 lanes,
    six-clock host reads, with 6 lanes; the engine's INFO bytes read from logic and
    its checks a clock after the bytes they check)."""
    rng, net = _net(seed)
    pipelined = seed == 3
    config = _config(net, 6 if pipelined else rng.choice([1, 2, 3]))
    image = compile_network(net, config)
    x = random_input(rng, net, 4, 1)[:, 0, :]
    want_steps, want_membranes = expected(net, x)
    requests = [Frame(Command.INFO, 7)]
    writes = write_requests(image.writes, start_seq=10)
    requests += writes
    reads = read_requests([a for a, _ in image.writes], start_seq=100)
    requests += [f for f, _ in reads]
    run = Frame(Command.RUN, 150, pack_run(_steps(x)))
    mem_reads = read_requests(membrane_reads(net, image), start_seq=160)
    flags_on = Frame(Command.WRITE, 170, pack_write(_reg("FLAGS"), [1]))
    reset = Frame(Command.RESET, 171)
    run2 = Frame(Command.RUN, 172, pack_run(_steps(x)))
    zeroed = read_requests(membrane_reads(net, image), start_seq=180)
    shift = config.lane_bits + config.addr_bits
    weights = read_requests([a for a, _ in image.writes if a >> shift != Region.MEMBRANES],
                            start_seq=190)
    regs = Frame(Command.READ, 250, pack_read(ENGINE_BASE, len(REGISTERS)))
    requests += [run, run] + [f for f, _ in mem_reads] + [flags_on, reset]
    requests += [f for f, _ in zeroed] + [run2] + [f for f, _ in weights] + [regs]
    dut = SoC(config=config, timing=PIPELINED if pipelined else None)
    out, _ = run_byte_stream(dut, b"".join(f.encode() for f in requests),
                             replies=len(requests), idle=0.2 if seed % 2 else 0.0,
                             backpressure=0.3 if seed else 0.0, seed=seed)
    replies = iter(decode_replies(out))
    pairs = iter(requests)

    def next_ok():
        req = next(pairs)
        return _ok(next(replies), req)

    info = json.loads(next_ok())
    assert info == json.loads(device_info(config))
    assert info["config_hash"] == config_hash(config) and info["link"] == "stream"
    for _ in writes:
        assert next_ok() == b""
    stored = dict(image.writes)
    for _, addresses in reads:
        assert unpack_read_reply(next_ok(), len(addresses)) == [stored[a] for a in addresses]
    first = next_ok()
    assert next_ok() == first  # the retried RUN: answered from the cache
    outputs = unpack_run_reply(first, len(x))
    for t, (records, want) in enumerate(zip(outputs, want_steps, strict=True)):
        got = decode_step(records, net, image)
        assert got["values"] == want["values"] and got["out_spikes"] == want["out_spikes"], t
        assert all(not v for v in got["spikes"].values())  # FLAGS bit 0 clear: no kind 0
    got_words = {}
    for _, addresses in mem_reads:
        got_words.update(zip(addresses, unpack_read_reply(next_ok(), len(addresses)),
                             strict=True))
    membranes = decode_membranes([got_words[a] for a in membrane_reads(net, image)], net, image)
    assert membranes == want_membranes
    assert next_ok() == b""  # FLAGS = 1
    assert next_ok() == b""  # RESET
    for _, addresses in zeroed:
        assert unpack_read_reply(next_ok(), len(addresses)) == [0] * len(addresses)
    outputs = unpack_run_reply(next_ok(), len(x))
    for t, (records, want) in enumerate(zip(outputs, want_steps, strict=True)):
        assert decode_step(records, net, image) == want, t  # hidden spikes too, fresh state
    for _, addresses in weights:  # everything but the membranes: as loaded
        assert unpack_read_reply(next_ok(), len(addresses)) == [stored[a] for a in addresses]
    values = dict(zip(REGISTERS, unpack_read_reply(next_ok(), len(REGISTERS)), strict=True))
    assert values == {"FLAGS": 1, "FRAMES_OK": len(requests), "DROP_BAD_CRC": 0,
                      "DROP_BAD_LENGTH": 0, "DROP_TOO_LARGE": 0, "ERRORS": 0, "REPLAYS": 1,
                      "STEPS": 2 * len(x)}
    with pytest.raises(StopIteration):
        next(replies)


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=lambda t: t.value)
def test_engine_errors(timing):
    """Each error path answers its ERROR code and changes nothing; bad frames are
    dropped and counted; the device keeps answering.  With both profiles (the
    pipelined engine checks a field a clock after reading it)."""
    rng, net = _net(5)
    config = _config(net, 2)
    image = compile_network(net, config)
    amap = {e.region: e for e in address_map(config)}
    w_addr = config.address(Region.WEIGHTS, 1, 3)
    counters = config.address(Region.COUNTERS, 0, 0)
    over = 1 << config.host_data_bits
    lo = -(1 << (config.in_bits - 1))
    last_w = config.address(Region.WEIGHTS, config.lanes - 1, amap[Region.WEIGHTS].depth - 1)
    cases = [
        (Frame(0x42, 1), ErrorCode.UNKNOWN_COMMAND),
        (Frame(0x7F, 2), ErrorCode.UNKNOWN_COMMAND),
        (Frame(Command.INFO, 3, b"x"), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.RESET, 4, b"\0"), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 5, pack_write(w_addr, [5])[:-1]), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 6, pack_write(w_addr, [5]) + b"\0" * 8), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 7, b"\0" * 6), ErrorCode.BAD_PAYLOAD),  # count 0
        (Frame(Command.WRITE, 8, pack_write(w_addr, [1, 2, over])), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 9, pack_write(counters, [0])), ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.WRITE, 10, pack_write(_reg("STEPS"), [0])),
         ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.WRITE, 11, pack_write(_reg("FLAGS"), [1 << 32])), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 12, pack_write(
            config.address(Region.WEIGHTS, 0, amap[Region.WEIGHTS].depth - 1), [1, 2])
            if config.lanes == 1 else pack_write(
                config.address(Region.WEIGHTS, config.lanes - 1,
                               amap[Region.WEIGHTS].depth - 1), [1, 2])),
         ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.WRITE, 13, b"\xff\xff\xff\xff\x02\x00" + b"\0" * 16),
         ErrorCode.ADDRESS_OUT_OF_RANGE),  # past the 32-bit space
        (Frame(Command.READ, 14, b"\0" * 6), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.READ, 15, pack_read(0, 1) + b"\0"), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.READ, 16, b"\0\0\0\0\x81\x00"), ErrorCode.TOO_LARGE),
        (Frame(Command.READ, 17, pack_read(ENGINE_BASE + len(REGISTERS), 1)),
         ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.READ, 18, pack_read(config.address(Region.CONTROL, 0, 1), 1)),
         ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.READ, 19, pack_read(1 << config.host_addr_bits, 1)),
         ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.READ, 20, b"\xff\xff\xff\xff\x02\x00"), ErrorCode.ADDRESS_OUT_OF_RANGE),
        (Frame(Command.RUN, 21, b""), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.RUN, 22, b"\0\0"), ErrorCode.BAD_PAYLOAD),  # 0 steps
        (Frame(Command.RUN, 23, pack_run([[(0, 1)], [(config.max_inputs, 1)]])),
         ErrorCode.BAD_PAYLOAD),
        (Frame(Command.RUN, 24, pack_run([[(0, lo - 1)]]) if config.in_bits < 16
               else pack_run([[(70000 % 65536, 1)]])), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.RUN, 25, pack_run([[(0, 1)]]) + b"\0"), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.RUN, 26, pack_run([[(0, 1), (1, 1)]])[:-4]), ErrorCode.BAD_PAYLOAD),
        # A step declaring 256 events (its count's high byte set): refused, nothing runs.
        (Frame(Command.RUN, 29, b"\x01\x00\x00\x01"), ErrorCode.BAD_PAYLOAD),
        # The order of the WRITE checks: word 0's bytes before word 1's address, and
        # word 1's address before its bytes.
        (Frame(Command.WRITE, 27, pack_write(last_w, [over, 2])), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 28, pack_write(last_w, [1, over])),
         ErrorCode.ADDRESS_OUT_OF_RANGE),
        # The last bytes of a word (the pipelined engine checks them a clock later):
        # word 0's last byte before word 1's address, and the last word's last two bytes.
        (Frame(Command.WRITE, 31, pack_write(last_w, [1 << 63, 2])), ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 32, pack_write(_reg("FLAGS"), [1 << 48])),
         ErrorCode.BAD_PAYLOAD),
        (Frame(Command.WRITE, 33, pack_write(w_addr, [1, 1 << 63])), ErrorCode.BAD_PAYLOAD),
    ]
    probe = Frame(Command.READ, 200, pack_read(w_addr, 1))
    regs = Frame(Command.READ, 201, pack_read(ENGINE_BASE, len(REGISTERS)))
    load = write_requests(image.writes, start_seq=100)
    stream = b"".join(f.encode() for f in load)
    bad = b"\x13\x37garbage" + b"\0" + Frame(9, 9, b"abc").encode()[:-3] + b"\0"  # 2 BAD_LENGTH
    body = Frame(Command.INFO, 30).to_body()
    from spikeforge.contract.framing import cobs_encode

    bad += cobs_encode(body[:-1] + bytes([body[-1] ^ 1])) + b"\0"  # BAD_CRC
    bad += b"\x55" * 1100 + b"\0"  # TOO_LARGE
    stream += bad
    stream += b"".join(f.encode() for f, _ in cases) + probe.encode() + regs.encode()
    dut = SoC(config=config, timing=timing)
    out, _ = run_byte_stream(dut, stream, replies=len(load) + len(cases) + 2, seed=5,
                             backpressure=0.2)
    replies = decode_replies(out)
    for req, rep in zip(load, replies, strict=False):
        assert _ok(rep, req) == b""
    replies = replies[len(load):]
    for (req, code), rep in zip(cases, replies, strict=False):
        _error(rep, req, code)
    assert unpack_read_reply(_ok(replies[-2], probe), 1) == [dict(image.writes).get(w_addr, 0)]
    values = dict(zip(REGISTERS, unpack_read_reply(_ok(replies[-1], regs)), strict=True))
    assert values == {"FLAGS": 0, "FRAMES_OK": len(load) + len(cases) + 2, "DROP_BAD_CRC": 1,
                      "DROP_BAD_LENGTH": 2, "DROP_TOO_LARGE": 1, "ERRORS": len(cases),
                      "REPLAYS": 0, "STEPS": 0}


def test_engine_run_reply_too_large():
    """A RUN whose reply would exceed MAX_PAYLOAD: ERROR TOO_LARGE, the steps all ran."""
    rng, net = _net(2)
    config = _config(net, 2)
    image = compile_network(net, config)
    out_size = net.layer(net.output).size
    per_step = 2 + 8 * (out_size + 1)
    steps = 1024 // per_step + 1
    run = Frame(Command.RUN, 3, pack_run([[] for _ in range(steps)]))
    regs = Frame(Command.READ, 4, pack_read(_reg("STEPS"), 1))
    load = write_requests(image.writes, start_seq=100)
    stream = b"".join(f.encode() for f in [*load, run, regs])
    out, _ = run_byte_stream(SoC(config=config), stream, replies=len(load) + 2)
    replies = decode_replies(out)[len(load):]
    _error(replies[0], run, ErrorCode.TOO_LARGE)
    assert unpack_read_reply(_ok(replies[1], regs)) == [steps]


def test_generics_are_validated():
    config = CoreConfig(lanes=2, max_layers=1, max_edges=1, max_neurons=4, max_inputs=4,
                        max_fanin=4, neuron_depth=2, weight_depth=8)
    with pytest.raises(TypeError, match=r"^config must be a CoreConfig, not 1$"):
        SoC(config=1)
    with pytest.raises(ValueError, match=r"^link must be 'stream' or 'uart', not 'spi'$"):
        SoC(config=config, link="spi")
    with pytest.raises(ValueError, match=r"^baud 9600 is for link='uart' only$"):
        SoC(config=config, baud=9600)
    with pytest.raises(ValueError, match=r"^clk_freq must be a positive integer, not None$"):
        SoC(config=config, link="uart", baud=9600)
    with pytest.raises(ValueError, match=r"^rx_fifo_depth must be an integer >= 2, not 1$"):
        SoC(config=config, link="uart", clk_freq=12_000_000, baud=115_200, rx_fifo_depth=1)
    with pytest.raises(ValueError, match=r"^info must be 1\.\.1024 bytes, not b''$"):
        from spikeforge.gateware.link import CommandEngine

        CommandEngine(config=config, info=b"")
    with pytest.raises(TypeError, match=r"^timing must be a TimingProfile, not 1$"):
        CommandEngine(config=config, info=b"x", timing=1)
    with pytest.raises(TypeError, match=r"^timing must be None or a TimingProfile, not 'yes'$"):
        SoC(config=config, timing="yes")
    info = json.loads(device_info(config, link="uart", clock_hz=12_000_000, baud=115_200))
    assert info["config"]["lanes"] == 2 and info["baud"] == 115_200
    assert info["clock_hz"] == 12_000_000 and info["engine_base"] == ENGINE_BASE == 2 ** 31
    from spikeforge.sim.simboard import SimBoard

    with pytest.raises(ValueError, match=r"^port must be an integer in 0\.\.65535, not -1$"):
        SimBoard(config, port=-1)
    with pytest.raises(ValueError, match=r"^unknown configuration 'nope'"):
        SimBoard("nope")


def test_pipelined_link_costs_a_clock_per_check():
    """The pipelined profile's engine answers each request a clock later per check
    of a gathered field, and a WRITE one more for its last byte's check
    (docs/device.md): WRITE 2, READ 1 plus the core's five more clocks of read
    latency, RUN 1 + 1 per step + 1 per event (no layers: the core's steps take
    as long in both profiles)."""
    config = CoreConfig(lanes=2, max_layers=1, max_edges=1, max_neurons=4, max_inputs=4,
                        max_fanin=4, neuron_depth=4, weight_depth=64)
    addr = config.address(Region.WEIGHTS, 1, 3)
    steps = [[(0, 1), (1, -1)], [], [(2, 1)]]
    requests = [(Frame(Command.WRITE, 1, pack_write(addr, [7])), 2),
                (Frame(Command.READ, 1, pack_read(addr, 1)), 1 + 5),
                (Frame(Command.RUN, 1, pack_run(steps)), 1 + len(steps) + 3)]
    for request, extra in requests:
        delay, replies = {}, {}
        for fast in (False, True):
            clocks = {}
            out, _ = run_byte_stream(SoC(config=config, timing=PIPELINED if fast else COMPACT),
                                     request.encode(), replies=1, clocks=clocks)
            replies[fast] = out
            delay[fast] = clocks["first_out"] - clocks["last_in"]
        assert replies[True] == replies[False]
        _ok(decode_replies(replies[True])[0], request)  # (asserts an OK reply)
        assert delay[True] - delay[False] == extra, (request.cmd, delay)


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=lambda t: t.value)
def test_read_costs_12_plus_latency_clocks_per_core_word(timing):
    """A READ of core words costs ``(12 + L) * count + 14`` clocks (docs/device.md,
    ``L`` the core's ``host_read_latency``): a READ of 5 words answers exactly
    ``4 * (12 + L + 8)`` clocks later than a READ of 1, from the request's last
    byte to the reply's first (the encoder's CRC pass takes a clock per reply
    byte, 8 per word; the words are zero, so its first COBS run is the same)."""
    config = CoreConfig(lanes=2, max_layers=1, max_edges=1, max_neurons=4, max_inputs=4,
                        max_fanin=4, neuron_depth=4, weight_depth=64)
    latency = timing.host_read_latency
    delay = {}
    for count in (1, 5):
        request = Frame(Command.READ, 1, pack_read(config.address(Region.WEIGHTS, 1, 3), count))
        clocks = {}
        out, _ = run_byte_stream(SoC(config=config, timing=timing), request.encode(),
                                 replies=1, clocks=clocks)
        assert unpack_read_reply(_ok(decode_replies(out)[0], request), count) == [0] * count
        delay[count] = clocks["first_out"] - clocks["last_in"]
    assert delay[5] - delay[1] == 4 * (12 + latency + 8), delay


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=lambda t: t.value)
def test_engine_sessions(timing):
    """OPEN numbers the sessions and answers in the open form with the nonce; from
    then on only the session's form is taken (an OPEN in the open form too), the
    rest is dropped as BAD_CRC and not executed; each reply is in its request's
    form (an OPEN's in the open form); a retried OPEN is answered from the cache
    (the same session)."""
    from spikeforge.contract.payloads import pack_open, unpack_open_reply

    _, net = _net(4)
    config = _config(net, 2)
    w_addr = config.address(Region.WEIGHTS, 0, 1)  # (values below 4: w_bits >= 2)
    flags = _reg("FLAGS")
    open1 = Frame(Command.OPEN, 1, pack_open(0xDEADBEEF))
    open2 = Frame(Command.OPEN, 6, pack_open(7))
    reqs = [
        Frame(Command.WRITE, 0, pack_write(w_addr, [1])),                 # no session yet
        open1, open1,                                                       # the retry: cached
        Frame(Command.WRITE, 2, pack_write(w_addr, [2])),                 # open form: dropped
        Frame(Command.WRITE, 3, pack_write(w_addr, [3]), session=1),
        Frame(Command.READ, 4, pack_read(w_addr, 1), session=1),
        Frame(Command.WRITE, 5, pack_write(flags, [1]), session=2),        # not yet: dropped
        open2,
        Frame(Command.WRITE, 7, pack_write(w_addr, [2]), session=1),      # ended: dropped
        Frame(Command.READ, 8, pack_read(w_addr, 1), session=2),
        Frame(Command.OPEN, 9, pack_open(8), session=2),                   # in its session
        Frame(Command.READ, 10, pack_read(ENGINE_BASE, len(REGISTERS)), session=3),
    ]
    out, _ = run_byte_stream(SoC(config=config, timing=timing),
                             b"".join(f.encode() for f in reqs), replies=len(reqs) - 3)
    from spikeforge.contract.framing import FrameDecoder

    decoder = FrameDecoder()
    replies = []
    for chunk in out.split(b"\0")[:-1]:
        for session in (0, 1, 2, 3):
            decoder.session = session
            got = decoder.feed(chunk + b"\0")
            if got:
                replies += got
                break
    assert [(r.cmd, r.seq, r.session) for r in replies] == [
        (0x82, 0, 0), (0x86, 1, 0), (0x86, 1, 0), (0x82, 3, 1), (0x83, 4, 1), (0x86, 6, 0),
        (0x83, 8, 2), (0x86, 9, 0), (0x83, 10, 3)]
    assert unpack_open_reply(replies[1].payload) == (0xDEADBEEF, 1)
    assert replies[2].payload == replies[1].payload
    assert unpack_open_reply(replies[5].payload) == (7, 2)
    assert unpack_read_reply(replies[4].payload) == [3]
    assert unpack_read_reply(replies[6].payload) == [3]
    assert unpack_open_reply(replies[7].payload) == (8, 3)
    values = dict(zip(REGISTERS, unpack_read_reply(replies[8].payload), strict=True))
    assert values["FLAGS"] == 0 and values["DROP_BAD_CRC"] == 3 and values["REPLAYS"] == 1
