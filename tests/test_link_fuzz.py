"""Fuzzing the control and table words of the simulated board (issue #32): random
in-range values in every layer, edge, SSM-layer and control word and in FLAGS,
then a RUN.  Every RUN answers (its result, or ERROR BAD_TABLE / WATCHDOG /
TOO_LARGE) within the socket's timeout, and RESET plus a real model afterwards is
bit-exact.

The values are steered into the corners that wedged the device before (a layer
count over ``max_layers``, ``rows = 0``, a layer's edges past the table, sizes
and counts at their maximum) besides uniform words; the bins must all be hit."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from linkutil import RawClient, write_requests
from netgen import random_input, random_network
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import (
    EDGE_FIELDS,
    LAYER_FIELDS,
    SSM_FIELDS,
    FitError,
    Region,
    address_map,
)
from spikeforge.contract.framing import Frame
from spikeforge.contract.harness import decode_step, expected, input_events
from spikeforge.contract.info import ENGINE_BASE
from spikeforge.contract.payloads import pack_run, pack_write, unpack_error, unpack_run_reply
from spikeforge.contract.protocol import ERROR_REPLY, Command, ErrorCode, reply_cmd
from spikeforge.golden.integer import Format
from spikeforge.sim.rtl import config_named
from spikeforge.sim.simboard import SimBoard
from spikeforge.sim.verilator import missing_tools

_missing = missing_tools()
pytestmark = pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                                + ", ".join(_missing) if _missing else "")

TABLES = {Region.LAYERS: LAYER_FIELDS, Region.EDGES: EDGE_FIELDS, Region.SSM_LAYERS: SSM_FIELDS}


def _field_value(rng, name, width, bins):
    """A field's value: a corner (0 or all ones) or uniform; the bin is counted."""
    r = rng.random()
    if r < 0.15:
        bins[f"{name}=0"] += 1
        return 0
    if r < 0.3:
        bins[f"{name}=max"] += 1
        return (1 << width) - 1
    return rng.randrange(1 << width)


def _entry(rng, fields, bins):
    """A table word made field by field (two's complement for signed fields)."""
    word, shift = 0, 0
    for name, width in fields:
        word |= _field_value(rng, name, width, bins) << shift
        shift += width
    return word


def _table_writes(rng, config, bins):
    writes = []
    for e in address_map(config):
        if e.region in TABLES:
            fields = TABLES[e.region](config)
            writes += [(config.address(e.region, 0, i), _entry(rng, fields, bins))
                       for i in range(e.depth)]
        elif e.region == Region.CONTROL:
            bits = config.max_layers.bit_length()
            count = rng.choice([rng.randrange(config.max_layers + 1),
                                rng.randrange(config.max_layers + 1, 1 << bits)])
            bins["layers>max" if count > config.max_layers else "layers<=max"] += 1
            writes.append((config.address(Region.CONTROL, 0, 0), count))
    rng.shuffle(writes)
    return writes


def _real_model(rng, config):
    fmt = config.fmt
    while True:
        net = random_network(rng, max_ssm=1 if config.has_ssm else 0,
                             ssm_prob=0.5 if config.has_ssm else 0.0, max_lif=2, max_size=8,
                             fmt=Format(w_bits=fmt.w_bits, u_bits=fmt.u_bits,
                                        frac_bits=fmt.frac_bits, in_bits=fmt.in_bits))
        try:
            return net, compile_network(net, config)
        except FitError:
            continue


def _check_real_model(client, rng, config, seq):
    """RESET, load a real network, RUN it: bit-exact against the golden model."""
    net, image = _real_model(rng, config)
    client.ok(Frame(Command.WRITE, seq, pack_write(ENGINE_BASE, [1])))  # FLAGS: all records
    client.pipelined(write_requests(image.writes, start_seq=seq + 1))
    assert client.ok(Frame(Command.RESET, seq + 100)) == b""
    x = random_input(rng, net, 3, 1)[:, 0, :]
    want, _ = expected(net, x)
    reply = client.ok(Frame(Command.RUN, seq + 101, pack_run([input_events(r)
                                                              for r in x.tolist()])))
    for t, (records, w) in enumerate(zip(unpack_run_reply(reply, len(x)), want, strict=True)):
        assert decode_step(records, net, image) == w, t


def _fuzz(config_name, trials, seed):
    config = config_named(config_name)
    rng = random.Random(seed)
    bins, answers = Counter(), Counter()
    with SimBoard(config) as board:
        client = RawClient(board.port)
        client.send_raw(b"\0")
        seq = 0
        for trial in range(trials):
            writes = _table_writes(rng, config, bins)
            flags = rng.choice([0, 1, rng.randrange(1 << 32)])
            writes.append((ENGINE_BASE, flags))
            frames = write_requests(writes, start_seq=seq)
            client.pipelined(frames)
            seq = (seq + len(frames)) % 256
            steps = [[(rng.randrange(config.max_inputs),
                       rng.randrange(-(1 << (config.in_bits - 1)), 1 << (config.in_bits - 1)))
                      for _ in range(rng.randrange(4))] for _ in range(rng.randint(1, 3))]
            run = Frame(Command.RUN, seq, pack_run(steps))
            seq = (seq + 1) % 256
            reply = client.request(run)  # (the socket's timeout bounds the wait)
            if reply.cmd == reply_cmd(Command.RUN):
                answers["result"] += 1
            else:
                assert reply.cmd == ERROR_REPLY, reply
                code, _ = unpack_error(reply.payload)
                assert code in (ErrorCode.WATCHDOG, ErrorCode.TOO_LARGE, ErrorCode.BAD_TABLE), \
                    (trial, code)
                answers[ErrorCode(code).name] += 1
            if trial % 250 == 249:
                _check_real_model(client, rng, config, 0)
                seq = 0
        _check_real_model(client, rng, config, 0)
        client.close()
    return bins, answers


def _check_bins(config_name, bins, answers):
    config = config_named(config_name)
    wanted = ["rows=0", "rows=max", "ecount=max", "size=max", "layers>max", "layers<=max"]
    if config.has_ssm:
        wanted += ["n=0", "n=max", "k_src=max", "g_src=max"]
    assert all(bins[b] for b in wanted), {b: bins[b] for b in wanted}
    assert answers["result"] and answers["BAD_TABLE"], answers


@pytest.mark.parametrize(("config_name", "trials"), [("tiny", 1500), ("demo", 250)])
def test_random_tables_never_wedge(config_name, trials):
    bins, answers = _fuzz(config_name, trials, seed=1)
    _check_bins(config_name, bins, answers)
    print(config_name, dict(answers))


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["tiny", "demo"])
def test_random_tables_never_wedge_soak(config_name):
    bins, answers = _fuzz(config_name, 5000, seed=2)
    _check_bins(config_name, bins, answers)
