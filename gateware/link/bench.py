"""Link benchmarks on the simulated board (clock counts from its harness)."""

from __future__ import annotations

import socket
import time

from ...protocol import MAX_WRITE_WORDS, Command, Frame, FrameDecoder, pack_write, reply_cmd
from ..layout import Region, address_map

__all__ = ["uart_goodput"]


def uart_goodput(config="tiny", *, frames: int = 8, build_root=None) -> dict:
    """Goodput of a stream of max-size WRITE frames through the bit-level UART
    simulation, as a fraction of the 8N1 payload rate (baud / 10 bytes per second).

    The frames (``MAX_WRITE_WORDS`` words each, to the weights) are sent at once;
    ``clocks`` runs from the first byte in to the last reply byte out, so
    ``goodput = payload bytes / (clocks / (10 * clocks_per_bit))``."""
    from ..simboard import SimBoard

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
