"""The device never wedges (docs/device.md, Watchdog), on Amaranth's simulator:
tables a RUN cannot finish sensibly still end their steps, the step watchdog
aborts a step that runs too long (ERROR WATCHDOG, the core back at power-on),
and RESET plus a reload afterwards is bit-exact again."""

from __future__ import annotations

import pytest
from linkutil import decode_replies, run_byte_stream, write_requests
from netgen import random_input
from spikeforge.contract.compiler import compile_network
from spikeforge.contract.config import (
    EDGE_FIELDS,
    LAYER_FIELDS,
    Region,
    describe_fault,
    pack,
    unpack,
)
from spikeforge.contract.framing import Frame
from spikeforge.contract.harness import decode_step, expected
from spikeforge.contract.payloads import (
    pack_read,
    pack_run,
    pack_write,
    unpack_error,
    unpack_read_reply,
)
from spikeforge.contract.protocol import ERROR_REPLY, Command, ErrorCode
from spikeforge.contract.timing import COMPACT, PIPELINED, watchdog_clocks
from spikeforge.gateware.link import SoC
from test_link_engine import _config, _error, _net, _ok, _steps


def _image(seed=1):
    rng, net = _net(seed)
    config = _config(net, 2)
    return rng, net, config, compile_network(net, config)


def _check_run(reply, request, net, image, x):
    from spikeforge.contract.payloads import unpack_run_reply

    want, _ = expected(net, x)
    got = unpack_run_reply(_ok(reply, request), len(x))
    for t, (records, w) in enumerate(zip(got, want, strict=True)):
        step = decode_step(records, net, image)  # (FLAGS bit 0 clear: no hidden spikes)
        assert (step["values"], step["out_spikes"]) == (w["values"], w["out_spikes"]), t


@pytest.mark.parametrize("timing", [COMPACT, PIPELINED], ids=lambda t: t.value)
def test_bad_tables_end_their_steps(timing):
    """The wedges the issue found: a layer count over ``max_layers`` (CONTROL 255)
    runs (the walk stops at the table's last entry); a layer entry with ``rows = 0``
    and an edge whose source is past the layers stop the step with ERROR BAD_TABLE
    naming the entry and the failed check, the core reset (its tables read back
    zero); after RESET and a reload the model is bit-exact."""
    rng, net, config, image = _image()
    control = config.address(Region.CONTROL, 0, 0)
    layer0 = config.address(Region.LAYERS, 0, 0)
    edge0 = config.address(Region.EDGES, 0, 0)
    stored = dict(image.writes)
    zero_rows = pack(LAYER_FIELDS(config), {**unpack(LAYER_FIELDS(config), stored[layer0]),
                                            "rows": 0})
    bad_src = pack(EDGE_FIELDS(config), {**unpack(EDGE_FIELDS(config), stored[edge0]),
                                         "src": config.max_layers + 1})
    x = random_input(rng, net, 3, 1)[:, 0, :]
    load = write_requests(image.writes, start_seq=10)
    run = Frame(Command.RUN, 101, pack_run(_steps(x)))
    reqs = [*load,
            Frame(Command.WRITE, 100, pack_write(control, [255 & ((1 << 8) - 1)])),
            run,
            Frame(Command.WRITE, 103, pack_write(layer0, [zero_rows])),
            Frame(Command.RUN, 104, pack_run(_steps(x))),
            Frame(Command.READ, 105, pack_read(control, 1)),
            *write_requests(image.writes, start_seq=110),
            Frame(Command.WRITE, 150, pack_write(edge0, [bad_src])),
            Frame(Command.RUN, 151, pack_run(_steps(x))),
            Frame(Command.RESET, 152),
            *write_requests(image.writes, start_seq=160),
            Frame(Command.RUN, 200, pack_run(_steps(x)))]
    out, _ = run_byte_stream(SoC(config=config, timing=timing),
                             b"".join(f.encode() for f in reqs), replies=len(reqs))
    replies = dict(zip((f.seq for f in reqs), decode_replies(out), strict=True))
    by_seq = {f.seq: f for f in reqs}
    _ok(replies[101], run)  # the steps ended
    for seq, words in ((104, "layer 0: rows is 0, size is over rows x lanes"),
                       (151, "edge 0: src is over max_layers")):
        assert (replies[seq].cmd, replies[seq].seq) == (ERROR_REPLY, seq)
        code, message = unpack_error(replies[seq].payload)
        assert code == ErrorCode.BAD_TABLE and describe_fault(message) == words, message
    assert unpack_read_reply(_ok(replies[105], by_seq[105]), 1) == [0]  # core reset
    _check_run(replies[200], by_seq[200], net, image, x)


def test_watchdog_aborts_a_long_step():
    """With a watchdog of 12 clocks a real step is too long: ERROR WATCHDOG, the
    core reset to its power-on state (its tables read back zero, the weights are
    kept), then RESET, a reload and the same RUN with the default watchdog budget
    are bit-exact; an idle RUN (no layers) fits the 12 clocks."""
    rng, net, config, image = _image(2)
    x = random_input(rng, net, 2, 1)[:, 0, :]
    control = config.address(Region.CONTROL, 0, 0)
    stored = dict(image.writes)
    weight = next(a for a in stored if a >> (config.lane_bits + config.addr_bits)
                  == Region.WEIGHTS and stored[a])
    load = write_requests(image.writes, start_seq=10)
    run = Frame(Command.RUN, 100, pack_run(_steps(x)))
    after = [Frame(Command.READ, 101, pack_read(control, 1)),
             Frame(Command.READ, 102, pack_read(weight, 1)),
             Frame(Command.RUN, 103, pack_run([[]])),
             Frame(Command.RESET, 104)]
    out, _ = run_byte_stream(SoC(config=config, watchdog=12),
                             b"".join(f.encode() for f in [*load, run, *after]),
                             replies=len(load) + 5)
    replies = decode_replies(out)[len(load):]
    _error(replies[0], run, ErrorCode.WATCHDOG)
    assert unpack_read_reply(_ok(replies[1], after[0]), 1) == [0]
    assert unpack_read_reply(_ok(replies[2], after[1]), 1) == [stored[weight]]
    _ok(replies[3], after[2])
    assert _ok(replies[4], after[3]) == b""
    # The same device type with the default bound runs the model.
    reqs = [*load, run]
    out, _ = run_byte_stream(SoC(config=config), b"".join(f.encode() for f in reqs),
                             replies=len(reqs))
    _check_run(decode_replies(out)[-1], run, net, image, x)
    assert watchdog_clocks(config, COMPACT) > 12


def test_watchdog_is_validated():
    _, _, config, _ = _image()
    for bad in (0, -1, 1 << 32, 2.5, True):
        with pytest.raises(ValueError, match=r"^watchdog must be None or an integer in "
                                             r"1\.\.2\*\*32-1, not "):
            SoC(config=config, watchdog=bad)
