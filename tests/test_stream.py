"""Token streaming (host/stream.py): the state survives between calls, so any
chunking of a sequence gives one golden run's outputs, on the golden model and on
the simulated board (bit for bit); reset() clears it; the per-call clocks from the
hardware counters add up over the chunks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from spikeforge.device import Device
from spikeforge.golden.modelfile import load_model
from spikeforge.golden.train import task_data
from spikeforge.sim.simboard import SimBoard
from spikeforge.sim.verilator import missing_tools
from spikeforge.stream import GoldenStream, TokenStream, token_rows
from spikeforge.transport import SerialTransport

MODELS = Path(__file__).resolve().parents[1] / "host" / "models"
_missing = missing_tools()
needs_board = pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                                 + ", ".join(_missing) if _missing else "")


@pytest.fixture(scope="module")
def recall():
    net, meta = load_model(MODELS / "recall.safetensors")
    (x, _) = task_data(meta, "test")
    return net, x[:, :3]  # three sequences [T, 3, D]


def _chunked(stream, seq, size):
    parts = [stream.feed(seq[i:i + size]) for i in range(0, len(seq), size)]
    return parts, torch.cat([p.outputs for p in parts])


def test_golden_stream_any_chunking_is_one_run(recall):
    net, x = recall
    for b in range(x.shape[1]):
        seq = x[:, b]
        whole = net.run(seq[:, None, :]).outputs[net.output][:, 0]
        stream = GoldenStream(net)
        for size in (1, 7, len(seq)):
            stream.reset()
            assert torch.equal(_chunked(stream, seq, size)[1], whole), (b, size)
        # The state carries the context: after the second half alone (from a fresh
        # state) it differs from after the whole sequence.
        full = stream.state
        stream.reset()
        stream.feed(seq[len(seq) // 2:])
        assert any(not torch.equal(full[k], stream.state[k]) for k in full), b


def test_token_rows():
    assert token_rows([2, 0], 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert token_rows([[1, 0, 1]], 3).tolist() == [[1, 0, 1]]
    with pytest.raises(ValueError, match=r"^tokens\[1\] = 3 is not a token id in 0\.\.2$"):
        token_rows([0, 3], 3)
    with pytest.raises(ValueError, match=r"^tokens must be T token ids or \[T, 3\] input "
                                         r"rows, not \[1, 4\]$"):
        token_rows([[0, 0, 0, 1]], 3)


@pytest.fixture(scope="module")
def board():
    with SimBoard("demo") as b:
        yield b


@needs_board
def test_device_stream_is_bit_exact_in_any_chunking(board, recall):
    net, x = recall
    with Device(SerialTransport(board.url), timeout=2.0) as dev:
        dev.load(net)
        stream = TokenStream(dev)
        for b in range(x.shape[1]):
            seq = x[:, b]
            whole = net.run(seq[:, None, :]).outputs[net.output][:, 0]
            clocks = {}
            for size in (1, 7, len(seq)):
                stream.reset()
                parts, outputs = _chunked(stream, seq, size)
                assert torch.equal(outputs, whole), (b, size)
                clocks[size] = sum(p.clocks for p in parts)
                assert all(p.clocks_per_token > 0 for p in parts)
            assert clocks[1] == clocks[7] == clocks[len(seq)], clocks
        r = stream.feed(x[:1, 0])
        assert r.microseconds(100.0) == r.clocks / 100.0
        assert set(r.at_board_clocks()) >= {"icebreaker", "ulx3s-85f"}


@needs_board
def test_stream_command(board, recall):
    """``spikeforge stream``: a token per stdin line, one JSON line per token, each
    bit-exact; ``reset`` between two equal sequences gives equal outputs."""
    net, x = recall
    rows = [",".join(str(v) for v in row) for row in x[:6, 0].tolist()]
    text = "\n".join(rows + ["reset"] + rows) + "\n"
    proc = subprocess.run([sys.executable, "-m", "spikeforge", "stream",
                           str(MODELS / "recall.safetensors"), "--device", board.url,
                           "--json"], input=text, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["token"] for d in lines] == list(range(12))
    assert all(d["bit_exact"] and d["clocks"] > 0 for d in lines)
    assert [d["outputs"] for d in lines[:6]] == [d["outputs"] for d in lines[6:]]
    bad = subprocess.run([sys.executable, "-m", "spikeforge", "stream",
                          str(MODELS / "recall.safetensors"), "--device", board.url],
                         input="1,x\n", capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("spikeforge: error: stdin line 1: '1,x' is not a token id "
                                  "or a comma-separated input row of integers")
