"""Token streaming: a session that keeps every layer's state across calls, on a
device or on the golden model (inter-token processing: the token index is real
time, and a sequence model's state carries the context from one call to the next).

::

    with spikeforge.open("sim://") as dev:
        dev.load("recall.safetensors")
        s = TokenStream(dev)
        r = s.feed(tokens)        # [T, D] input rows, or T token ids (one-hot inputs)
        r.outputs                 # [T, out], as one golden run over everything fed so far
        r.clocks_per_token        # core clocks per token, from the hardware counters
        s.reset()                 # a fresh state

``feed`` may be called with any chunking (one token at a time, seven, all at
once): the outputs are the same as one golden run over the concatenation, because
nothing is reset between calls.  :class:`GoldenStream` is the same API on the
golden model (its ``Trace.state`` carried from call to call).

Latency: the device's counters hold the core's busy clocks (``step_cycles``) and
steps; a call's clocks are their difference across it (modulo 2**32), so they
count the core's work per token and not the link's.  ``microseconds(mhz)`` turns
them into time at a clock; ``at_board_clocks()`` at each board's target clock (for
these clocks: another core configuration or timing profile takes other clocks,
see ``spikeforge fit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .golden.data import as_integer_tensor

__all__ = ["TokenStream", "GoldenStream", "StreamResult", "token_rows"]

_WRAP = 1 << 32  # the hardware counters' width


@dataclass
class StreamResult:
    """One call's results: per token the output layer's ``outputs`` (spikes of a
    spiking layer, else its values), ``values`` and ``spikes`` as ``[T, out]``; the
    core clocks the call took (``None`` on the golden model) and per token."""

    outputs: torch.Tensor
    values: torch.Tensor
    spikes: torch.Tensor
    clocks: int | None = None

    @property
    def clocks_per_token(self) -> float | None:
        return None if self.clocks is None else self.clocks / len(self.outputs)

    def microseconds(self, mhz: float) -> float | None:
        """Microseconds per token at ``mhz`` (for these clocks)."""
        return None if self.clocks is None else self.clocks_per_token / mhz

    def at_board_clocks(self) -> dict[str, float | None]:
        """Microseconds per token at each board's target clock (``boards``)."""
        from .boards.defs import BOARDS

        return {name: self.microseconds(b.target_mhz or 12.0) for name, b in BOARDS.items()}


def token_rows(tokens, size: int) -> torch.Tensor:
    """``tokens`` as ``[T, size]`` input rows: a 2-D array is taken as it is, a 1-D
    sequence of token ids becomes one-hot rows (ValueError for an id outside
    ``0 .. size - 1``, naming it)."""
    x = as_integer_tensor(tokens, "tokens")
    if x.dim() == 1:
        bad = ((x < 0) | (x >= size)).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise ValueError(f"tokens[{i}] = {int(x[i])} is not a token id in 0..{size - 1}")
        return torch.nn.functional.one_hot(x, size).to(torch.int64)
    if x.dim() != 2 or x.shape[1] != size:
        raise ValueError(f"tokens must be T token ids or [T, {size}] input rows, "
                         f"not {list(x.shape)}")
    return x


class TokenStream:
    """Token streaming on ``device`` (a :class:`.device.Device` with a model loaded);
    starts from a reset state."""

    def __init__(self, device):
        self.device = device
        self.net, _ = device._loaded()
        self.reset()

    def reset(self) -> None:
        """A fresh state (and the counters cleared)."""
        self.device.reset()

    def _busy_clocks(self) -> int:
        return self.device.counters()["step_cycles"]

    def feed(self, tokens) -> StreamResult:
        """Run ``tokens`` (see :func:`token_rows`) from the current state; the state
        stays for the next call."""
        x = token_rows(tokens, self.net.input_size)
        self.device._check_inputs(x, "tokens", batch=False)
        before = self._busy_clocks()
        r = self.device._sample(x, False, False)
        clocks = (self._busy_clocks() - before) % _WRAP
        return StreamResult(r.outputs, r.values, r.spikes, clocks)


class GoldenStream:
    """Token streaming on the golden model ``net``: the same outputs as
    :class:`TokenStream` on a device, bit for bit."""

    def __init__(self, net):
        self.net = net
        self.reset()

    def reset(self) -> None:
        self.state = self.net.initial_state(1)

    def feed(self, tokens) -> StreamResult:
        x = token_rows(tokens, self.net.input_size)
        trace = self.net.run(x[:, None, :], self.state)
        self.state = trace.state
        name = self.net.output
        outputs = trace.outputs[name][:, 0]
        values = trace.membranes[name][:, 0] if name in trace.membranes else outputs
        spikes = trace.spikes[name][:, 0] if name in trace.spikes else torch.zeros_like(outputs)
        return StreamResult(outputs, values, spikes)


def _line_tokens(line: str, number: int):
    """A stdin line of ``spikeforge stream``: a token id, or a comma-separated row."""
    try:
        values = [int(v) for v in line.split(",")]
    except ValueError:
        raise ValueError(f"stdin line {number}: {line!r} is not a token id or a "
                         f"comma-separated input row of integers") from None
    return values if len(values) == 1 else [values]


def cmd_stream(args) -> int:
    """``spikeforge stream MODEL``: tokens from stdin, one per line (a token id, a
    comma-separated input row, or ``reset``), each fed to the device as it comes,
    its output checked against the golden model's stream; one line out per token
    (JSON lines with ``--json``).  Exit 5 if any token was not bit-exact."""
    import json
    import sys

    from .commands import EXIT_DEVICE, EXIT_OK
    from .device import open as open_device
    from .golden.modelfile import load_model

    net, _ = load_model(args.model)
    golden = GoldenStream(net)
    exact, count = True, 0
    with open_device(args.device, timeout=args.timeout) as dev:
        dev.load(net)
        stream = TokenStream(dev)
        for number, line in enumerate(sys.stdin, 1):
            line = line.strip()
            if not line:
                continue
            if line == "reset":
                stream.reset()
                golden.reset()
                continue
            tokens = _line_tokens(line, number)
            got, want = stream.feed(tokens), golden.feed(tokens)
            same = torch.equal(got.outputs, want.outputs) and torch.equal(got.values,
                                                                           want.values)
            exact &= same
            out = got.outputs[0]
            report = {"token": count, "outputs": out.tolist(), "argmax": int(out.argmax()),
                      "clocks": got.clocks, "bit_exact": same}
            print(json.dumps(report) if args.json else
                  f"{count}\targmax {report['argmax']}\t{got.clocks} clocks\t"
                  f"{'bit-exact' if same else 'MISMATCH'}", flush=True)
            count += 1
    return EXIT_OK if exact else EXIT_DEVICE
