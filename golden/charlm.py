"""``charlm``: a small spiking character-level language model (issue 30, item 3).

Data, alphabet and the n-gram baselines: :mod:`.chardata`.  Model (``A = 64``
symbols, one-hot spike input; sizes from :class:`Config`)::

    x[t] (A spikes) -> embed  LIF (E)  -----------------------+--> hidden LIF (H) -> out LI (A)
                              \\--v, q--> mem SSM (E x E) --y--/     (recurrent: hidden[t-1])

* ``embed``: spiking LIF, ``e[t] = spikes(beta_e u + W_e x[t] + b_e)``: a learned
  sparse code of the current character (initialised as random sparse codes,
  :func:`.selectivity._init_codes`).
* ``mem``: the SSM unit in its diagonal form with a token-selected readout
  (docs/integer-model.md 5.7): ``k = b`` (a learned constant vector, signed
  ``in_bits``), ``v = q = e[t]``, a fixed per-row decay ``a_i`` (spread over time
  scales from 0 to about 0.98 at initialisation, learned)::

      S[t]_ij = sat( floor(a_i S[t-1]_ij / 2**F) + b_i e_j[t] )
      y_j[t]  = sat( (sum_i e_i[t] S[t]_ij) >> y_shift )

  Row ``i`` is a leaky count of the embedding's spikes at time scale ``a_i``; the
  current token's code picks the rows (time scales) it reads.
* ``hidden``: spiking LIF fed by ``e[t]`` and ``y[t]``, and by its own spikes of
  the step before when ``recurrent``; ``out``: an LI readout with ``alpha = 0``
  fed by ``hidden``: its membrane ``o[t] = W_o h[t] + b_o`` is the logit vector
  of the next character (in float units; the integer model's membrane divided by
  the layer's scale ``s_o``, stored as ``meta["logit_scale"]``).

Loss: cross entropy of ``o[t]`` against character ``t + 1``; bits per character =
loss / ln 2.  Training: the float twin with surrogate gradients on ``B``
contiguous streams of the training text, truncated BPTT over chunks of ``T``
characters (the state is carried from chunk to chunk, detached), Adam with a
cosine schedule; then quantization-aware fine-tuning in the twin's integer-exact
mode and :func:`~.quantize.to_integer`.

The float model without spikes (``"smooth"``): the same parameters and
equations with every spike replaced by ``sigmoid(4 (v - theta) / theta)`` (and the
reset subtracting that amount) and the SSM in float (no floor or rounding; ``y``
is clipped to the ``y_bits`` range as the hardware saturates it); trained from the
same initialisation for the same steps.

Evaluation: the held-out text cut into :data:`EVAL_STREAMS` contiguous pieces,
each run from a reset state; every character after the first of a piece is
scored.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from . import chardata
from .integer import Format, Network, signed_range
from .quantize import enter_integer_mode, to_integer
from .selectivity import _init_codes
from .twin import SURROGATES, TwinLIF, TwinNetwork, TwinSSM

__all__ = ["Config", "build", "run_twin", "train_charlm", "integer_logits", "bpc_integer",
           "bpc_twin", "calibrate_y_shift", "logit_scale_of", "EVAL_STREAMS", "TASK", "MODES"]

TASK = "charlm"
MODES = ("spiking", "smooth")
EVAL_STREAMS = 16
SMOOTH_SLOPE = 4.0
A = len(chardata.ALPHABET)


@dataclass
class Config:
    embed: int = 32           # E: embedding spikes = SSM state n = m
    hidden: int = 256         # H
    recurrent: bool = True    # hidden <- hidden[t-1]
    chunk: int = 64           # T: truncated BPTT length
    streams: int = 64         # B: contiguous training streams (the batch)
    steps: int = 600          # optimiser steps (chunks) of float training
    qat_steps: int = 100      # optimiser steps of quantization-aware fine-tuning
    lr: float = 5e-3
    qat_lr: float = 3e-4
    k_init: float = 24.0      # the SSM's constant k (integer units)
    y_target: float = 32.0    # y_shift is picked so that |y| is about this at init
    surrogate: str = "arctan"
    seed: int = 0

    def __post_init__(self):
        for name, lo, hi in (("embed", 1, 64), ("hidden", 1, 1024), ("chunk", 1, 4096),
                             ("streams", 1, 4096), ("steps", 0, 10 ** 7),
                             ("qat_steps", 0, 10 ** 7)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"unknown surrogate {self.surrogate!r}; choose one of "
                             f"{SURROGATES}")


# ------------------------------------------------------------------ model
def build(cfg: Config) -> TwinNetwork:
    """The twin of the module docstring, randomly initialised (``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    E, H = cfg.embed, cfg.hidden
    embed = TwinLIF("embed", E, [("input", A, False)], beta=0.0, learn_beta=True)
    _init_codes([embed], 0.3)
    mem = TwinSSM("mem", E, E, {"k": ("const", torch.full((E,), cfg.k_init)),
                                "v": ("embed", False), "q": ("embed", False)}, decay=1.0)
    with torch.no_grad():  # time scales from 0 (this token only) to ~0.98
        mem.decay.copy_(1.0 - 2.0 ** (-torch.arange(E, dtype=torch.float32) * 6.0 / E))
        mem.decay[0, 0] = 0.0
    inputs = [("embed", E, False), ("mem", E, False)]
    if cfg.recurrent:
        inputs.append(("hidden", H, True))
    hidden = TwinLIF("hidden", H, inputs, beta=0.5, gain=2.0)
    out = TwinLIF("out", A, [("hidden", H, False)], spiking=False, reset="none", beta=0.0,
                  learn_beta=False)
    return TwinNetwork(input_size=A, input_kind="spike", layers=[embed, mem, hidden, out],
                       output="out", fmt=Format(), surrogate=cfg.surrogate)


def _zero_state(twin: TwinNetwork, batch: int, dtype) -> dict:
    state = {}
    for layer in twin.layers:
        shape = (batch, layer.n, layer.m) if layer.kind == "ssm" else (batch, layer.size)
        state[layer.name] = torch.zeros(shape, dtype=dtype)
        state[f"{layer.name}.out"] = torch.zeros(batch, layer.out_size, dtype=dtype)
    return state


def _smooth_lif(layer: TwinLIF, sources, u):
    """A LIF step with the spike replaced by a sigmoid (float units, module docstring)."""
    current = sum(x @ w.T for x, w in zip(sources, layer.weights, strict=True))
    v = layer.beta.clamp(0.0, 1.0) * u + current + layer.bias
    if not layer.spiking:
        return v, v
    s = torch.sigmoid(SMOOTH_SLOPE * (v - layer.theta) / layer.theta)
    return s, v - layer.theta * s


def _smooth_ssm(layer: TwinSSM, ops, S):
    a = layer.decay[0].clamp(0.0, 1.0)
    S = a[:, None] * S + layer.consts["k"][None, :, None] * ops["v"][:, None, :]
    y_wide = (ops["q"][:, None, :] @ S)[:, 0, :]
    y = (y_wide / (1 << layer.y_shift)).clamp(*signed_range(Format().y_bits))
    return y, S, y_wide


def run_twin(twin: TwinNetwork, x: torch.Tensor, state: dict | None = None, *,
             mode: str = "spiking") -> tuple[torch.Tensor, dict, dict]:
    """Run the twin over ``x`` (``[T, B, A]``) from ``state`` (zeros if None);
    returns the logits ``[T, B, A]`` (float units), the state after the last step
    and per layer the outputs ``[T, B, size]`` (and ``mem.y_wide``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    dtype = next(twin.parameters()).dtype
    x = x.to(dtype)
    state = dict(state) if state is not None else _zero_state(twin, x.shape[1], dtype)
    trace = {layer.name: [] for layer in twin.layers}
    trace["mem.y_wide"] = []
    for t in range(x.shape[0]):
        now = {"input": x[t]}
        for layer in twin.layers:
            if layer.kind == "lif":
                srcs = [state[f"{src}.out"] if rec else now[src] for src, _, rec in layer.edges]
                if mode == "smooth":
                    o, state[layer.name] = _smooth_lif(layer, srcs, state[layer.name])
                else:
                    o, state[layer.name] = layer.step(srcs, state[layer.name], twin.surrogate,
                                                      twin.fmt)
            else:
                ops = {w: state[f"{src}.out"] if rec else now[src]
                       for w, (src, rec) in layer.sources.items()}
                step = _smooth_ssm(layer, ops, state[layer.name]) if mode == "smooth" else \
                    layer.step(ops, None, state[layer.name], twin.fmt)
                o, state[layer.name], wide = step
                trace["mem.y_wide"].append(wide)
            now[layer.name] = state[f"{layer.name}.out"] = o
            trace[layer.name].append(o)
    trace = {k: torch.stack(v) for k, v in trace.items()}
    logits = trace[twin.output]
    out = twin.layer(twin.output)
    if out.scale is not None:  # integer-exact mode: back to float units
        logits = logits / out.scale
    return logits, state, trace


def _detach(state: dict) -> dict:
    return {k: v.detach() for k, v in state.items()}


def calibrate_y_shift(twin: TwinNetwork, ids: torch.Tensor, cfg: Config) -> int:
    """Pick ``mem.y_shift`` so that the 99th percentile of ``|y_wide|`` on a stretch of
    training text is about ``cfg.y_target``."""
    mem = twin.layer("mem")
    with torch.no_grad():
        x = nn.functional.one_hot(ids[:512], A)[:, None, :]
        mem.y_shift = 0
        _, _, trace = run_twin(twin, x)
        p99 = float(trace["mem.y_wide"].abs().flatten().quantile(0.99))
    mem.y_shift = max(0, min(32, round(math.log2(max(p99, 1.0) / cfg.y_target))))
    # The hidden layer's weights from y: scaled to y's size (a y of y_target counts
    # about as much as one spike).
    hidden = twin.layer("hidden")
    with torch.no_grad():
        hidden.weights[1].mul_(1.0 / cfg.y_target)
    return mem.y_shift


# --------------------------------------------------------------- training
def _streams(ids: torch.Tensor, count: int) -> torch.Tensor:
    """``ids`` cut into ``count`` contiguous streams ``[L, count]`` (the rest dropped)."""
    length = len(ids) // count
    return ids[:length * count].reshape(count, length).T.contiguous()


def _fit(twin: TwinNetwork, ids: torch.Tensor, cfg: Config, steps: int, lr: float, *,
         mode: str, desc: str, progress: bool) -> list[float]:
    """``steps`` chunks of truncated BPTT; the mean bits per character per 50 steps."""
    if steps == 0:
        return []
    data = _streams(ids, cfg.streams)
    dtype = next(twin.parameters()).dtype
    opt = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    state, pos, curve, window = None, 0, [], []
    for _ in tqdm(range(steps), desc=desc, disable=not progress, leave=False):
        if pos + cfg.chunk + 1 > len(data):
            state, pos = None, 0  # the next epoch starts from a reset state
        chunk = data[pos:pos + cfg.chunk + 1]
        pos += cfg.chunk
        x = nn.functional.one_hot(chunk[:-1], A).to(dtype)
        logits, state, _ = run_twin(twin, x, state, mode=mode)
        loss = nn.functional.cross_entropy(logits.reshape(-1, A), chunk[1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(twin.parameters(), 1.0)
        opt.step()
        sched.step()
        state = _detach(state)
        window.append(float(loss.detach()) / math.log(2))
        if len(window) == 50:
            curve.append(round(sum(window) / len(window), 4))
            window = []
    if window:
        curve.append(round(sum(window) / len(window), 4))
    return curve


def bpc_twin(twin: TwinNetwork, ids: torch.Tensor, *, mode: str = "spiking",
             streams: int = EVAL_STREAMS) -> float:
    """Bits per character of the twin on ``ids`` (module docstring's evaluation)."""
    data = _streams(ids, streams)
    dtype = next(twin.parameters()).dtype
    with torch.no_grad():
        logits, _, _ = run_twin(twin, nn.functional.one_hot(data[:-1], A).to(dtype), mode=mode)
        loss = nn.functional.cross_entropy(logits.reshape(-1, A).double(),
                                           data[1:].reshape(-1))
    return float(loss) / math.log(2)


def integer_logits(membrane: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Float logits from the integer readout's membranes."""
    return membrane.double() / logit_scale


def bpc_integer(net: Network, ids: torch.Tensor, logit_scale: float, *,
                streams: int = EVAL_STREAMS) -> float:
    """Bits per character of the integer model on ``ids``."""
    data = _streams(ids, streams)
    x = nn.functional.one_hot(data[:-1], A).to(torch.int64)
    membrane = net.run(x, record=False).outputs[net.output]
    loss = nn.functional.cross_entropy(integer_logits(membrane, logit_scale).reshape(-1, A),
                                       data[1:].reshape(-1))
    return float(loss) / math.log(2)


def train_charlm(cfg: Config | None = None, *, progress: bool = False,
                 baselines: bool = True) -> tuple[Network, dict]:
    """Train the spiking model of ``cfg`` (and the smooth float model of the same
    size); returns the integer network and its metadata (task ``charlm``, the
    alphabet, the logit scale, the bits per character of every model)."""
    cfg = cfg or Config()
    start = time.monotonic()
    data = chardata.split()
    train, heldout = data["train"], data["heldout"]
    figures, curves, seconds = {}, {}, {}
    twin = None
    for mode in MODES:
        t0 = time.monotonic()
        model = build(cfg)
        calibrate_y_shift(model, train, cfg)
        curves[mode] = _fit(model, train, cfg, cfg.steps, cfg.lr, mode=mode,
                            desc=f"charlm {mode}", progress=progress)
        figures[f"float_{mode}"] = bpc_twin(model, heldout, mode=mode)
        seconds[mode] = round(time.monotonic() - t0, 1)
        if mode == "spiking":
            twin = model
    t0 = time.monotonic()
    ptq = to_integer(twin)
    figures["integer_ptq"] = bpc_integer(ptq, heldout, logit_scale_of(twin))
    enter_integer_mode(twin)
    curves["qat"] = _fit(twin, train, cfg, cfg.qat_steps, cfg.qat_lr, mode="spiking",
                         desc="charlm QAT", progress=progress)
    net = to_integer(twin)
    scale = logit_scale_of(twin)
    figures["integer"] = bpc_integer(net, heldout, scale)
    seconds["qat"] = round(time.monotonic() - t0, 1)
    if baselines:
        figures.update({name: round(v["bpc"], 4) for name, v in
                        chardata.ngram_baselines(train, heldout).items()})
    figures = {k: round(v, 4) for k, v in figures.items()}
    meta = {"task": TASK, "alphabet": chardata.ALPHABET, "logit_scale": scale,
            "config": dataclasses.asdict(cfg), "bpc": figures,
            "data": {"source": "pydoc_data.topics", "heldout_keys": data["heldout_keys"],
                     "train_chars": len(train), "heldout_chars": len(heldout),
                     "eval_streams": EVAL_STREAMS},
            "training": {"curves": curves, "seconds": seconds,
                         "total_seconds": round(time.monotonic() - start, 1)}}
    return net, meta


def logit_scale_of(twin: TwinNetwork) -> float:
    """The readout's scale ``s_o``: integer membrane = ``s_o`` x float logit."""
    from .quantize import layer_scale

    out = twin.layer(twin.output)
    return float(out.scale if out.scale is not None else layer_scale(out, twin.fmt))
