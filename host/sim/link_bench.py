"""Link benchmarks on the simulated board (clock counts from its harness)."""

from __future__ import annotations

import socket
import time

from ..contract.config import Region, address_map
from ..contract.framing import Frame, FrameDecoder
from ..contract.payloads import MAX_WRITE_WORDS, pack_write
from ..contract.protocol import MAX_PAYLOAD, Command, reply_cmd

__all__ = ["uart_goodput", "stream_board_speed"]


def uart_goodput(config="tiny", *, frames: int = 8, build_root=None) -> dict:
    """Goodput of a stream of max-size WRITE frames through the bit-level UART
    simulation, as a fraction of the 8N1 payload rate (baud / 10 bytes per second).

    The frames (``MAX_WRITE_WORDS`` words each, to the weights) are sent at once;
    ``clocks`` runs from the first byte in to the last reply byte out, so
    ``goodput = payload bytes / (clocks / (10 * clocks_per_bit))``."""
    from .simboard import SimBoard

    with SimBoard(config, uart=True, stats=True, build_root=build_root) as board:
        c = board.config
        depth = next(e.depth for e in address_map(c) if e.region == Region.WEIGHTS)
        per_lane = max(1, depth // MAX_WRITE_WORDS)
        requests = []
        for i in range(frames):
            lane, row = divmod(i, per_lane)
            lane %= c.lanes
            count = min(MAX_WRITE_WORDS, depth - row * MAX_WRITE_WORDS)
            words = [(i * 7 + j) % (1 << c.w_bits) for j in range(count)]
            requests.append(Frame(Command.WRITE, i % 256,
                                  pack_write(c.address(Region.WEIGHTS, lane,
                                                       row * MAX_WRITE_WORDS), words)))
        wire = b"".join(f.encode() for f in requests)
        with socket.create_connection(("127.0.0.1", board.port)) as sock:
            t0 = time.perf_counter()
            sock.sendall(wire)
            dec = FrameDecoder()
            replies = []
            while len(replies) < len(requests):
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the simulated board closed the connection")
                replies += dec.feed(chunk)
            seconds = time.perf_counter() - t0
        for req, rep in zip(requests, replies, strict=True):
            if (rep.cmd, rep.seq, rep.payload) != (reply_cmd(req.cmd), req.seq, b""):
                raise RuntimeError(f"unexpected reply {rep} to WRITE seq {req.seq}")
        clocks, n_in, _ = board.session()
        cpb = board.clocks_per_bit
    payload = sum(len(f.payload) for f in requests)
    line_bytes = clocks / (10 * cpb)
    return {"frames": frames, "payload_bytes": payload, "wire_bytes": len(wire),
            "clocks": clocks, "clocks_per_bit": cpb,
            "goodput_fraction": payload / line_bytes,
            "wire_fraction": len(wire) / line_bytes,
            "sim_clocks_per_second": clocks / seconds}


def stream_board_speed(config="tiny", *, runs: int = 20, build_root=None) -> dict:
    """Clocks per second of the byte-stream simulated board on RUN requests (a dense
    one-layer network, every input active), from its ``SESSION`` clock count and the
    wall time of the session (TCP round trips included)."""
    import random

    import torch

    from ..contract.compiler import compile_network
    from ..contract.payloads import pack_run
    from ..golden.integer import INPUT, LIFLayer, Network, Projection
    from .simboard import SimBoard

    with SimBoard(config, stats=True, build_root=build_root) as board:
        c = board.config
        # As many outputs as one step's reply can carry (n_out value records + the end).
        n_in = c.max_inputs
        n_out = min(c.max_neurons, c.neuron_depth * c.lanes, (MAX_PAYLOAD - 2) // 8 - 1)
        rng = random.Random(0)
        w_lo, w_hi = -(1 << (c.w_bits - 1)), (1 << (c.w_bits - 1)) - 1
        weight = torch.tensor([[rng.randint(w_lo, w_hi) for _ in range(n_in)]
                               for _ in range(n_out)], dtype=torch.int64)
        layer = LIFLayer("out", n_out, alpha=torch.full((n_out,), 1 << c.frac_bits),
                         theta=torch.full((n_out,), 1 << (c.u_bits - 2)),
                         bias=torch.zeros(n_out, dtype=torch.int64), reset="zero", v_reset=0,
                         spiking=True, inputs=[Projection(INPUT, weight)])
        net = Network(input_size=n_in, input_kind="spike", layers=[layer], output="out",
                      fmt=c.fmt)
        image = compile_network(net, c)
        words = dict(image.writes)
        loads, run = [], []
        for addr in sorted(words):
            if run and run[-1] + 1 == addr and len(run) < MAX_WRITE_WORDS:
                run.append(addr)
            else:
                run = [addr]
                loads.append(run)
        requests = [Frame(Command.WRITE, i % 256, pack_write(r[0], [words[a] for a in r]))
                    for i, r in enumerate(loads)]
        step = [(j, 1) for j in range(n_in)]
        steps = MAX_PAYLOAD // (2 + 8 * (n_out + 1))
        with socket.create_connection(("127.0.0.1", board.port)) as sock:
            dec = FrameDecoder()
            t0 = time.perf_counter()
            runs_out = [Frame(Command.RUN, (200 + i) % 256, pack_run([step] * steps))
                        for i in range(runs)]
            for frame in [*requests, *runs_out]:
                sock.sendall(frame.encode())
                got = []
                while not got:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise RuntimeError("the simulated board closed the connection")
                    got = dec.feed(chunk)
                if got[0].cmd != reply_cmd(frame.cmd):
                    raise RuntimeError(f"unexpected reply {got[0]} to {frame.cmd}")
            seconds = time.perf_counter() - t0
        clocks, _, _ = board.session()
    return {"runs": runs, "steps_per_run": steps, "clocks": clocks, "seconds": seconds,
            "sim_clocks_per_second": clocks / seconds,
            "simulation_clocks_per_second": board.sim_speed}
