"""Random networks and inputs for the integer model.

Shared by the golden tests and (later) the RTL tests::

    from netgen import random_network, random_input

    rng = random.Random(seed)
    net = random_network(rng)                  # a valid Network
    x = random_input(rng, net, steps=8, batch=3)  # [T, B, input_size] int64

Everything is drawn from the caller's ``random.Random``, so a seed reproduces a
case exactly.  The networks cover the whole rule set: 1..``max_lif`` LIF layers
(spiking with every reset mode, or non-spiking LI readouts), feed-forward,
skip, recurrent and self-recurrent edges, spike or multi-bit int input, and
0..``max_ssm`` SSM layers whose ``k`` / ``v`` / ``q`` come from sources or
constants, with fixed or selective (gated) decay.  About a third of the
networks are "hot": narrow widths and extreme weights / biases / constants so
that the ``u``, ``s`` and ``y`` saturations are actually reached.
"""

from __future__ import annotations

import dataclasses
import random

import torch
from spikeforge.golden.integer import (
    INPUT,
    Format,
    LIFLayer,
    Network,
    Operand,
    Projection,
    SSMLayer,
    signed_range,
)

__all__ = ["random_format", "random_network", "random_input", "steer", "parse_cases"]


def _tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def random_format(rng: random.Random, *, w_bits: tuple[int, int] = (2, 8),
                  hot: bool = False) -> Format:
    """A random :class:`Format` (``acc_bits`` left at 48; the network builder narrows it)."""
    return Format(
        w_bits=rng.randint(*w_bits),
        u_bits=rng.randint(4, 8) if hot else rng.randint(6, 16),
        frac_bits=rng.randint(0, 8),
        in_bits=rng.randint(2, 8),
        s_bits=rng.randint(4, 7) if hot else rng.randint(6, 16),
        y_bits=rng.randint(2, 5) if hot else rng.randint(3, 10),
        acc_bits=48,
    )


def _value(rng: random.Random, lo: int, hi: int, *, zero: float = 0.0,
           extreme: float = 0.0) -> int:
    """A random integer in ``[lo, hi]``: sometimes 0, sometimes a bound."""
    r = rng.random()
    if r < zero:
        return 0
    if r < zero + extreme:
        return rng.choice((lo, hi))
    return rng.randint(lo, hi)


def _operand(rng: random.Random, length: int, ff: list[str], rec: list[str],
             out_of: dict[str, int], c_lo: int, c_hi: int, extreme: float) -> Operand:
    """An SSM operand of ``length``: half the time from a source of that size, else constant."""
    if rng.random() < 0.5:
        choices = [(src, False) for src in ff if out_of[src] == length]
        choices += [(src, True) for src in rec if out_of[src] == length]
        if choices:
            src, must_recur = rng.choice(choices)
            recur = must_recur or (src != INPUT and rng.random() < 0.25)
            return Operand(source=src, recurrent=recur)
    return Operand(const=_tensor([_value(rng, c_lo, c_hi, zero=0.3, extreme=extreme)
                                  for _ in range(length)]))


def random_network(rng: random.Random, *, max_lif: int = 4, max_ssm: int = 2,
                   max_size: int = 12, ssm_prob: float = 0.4, recurrent_prob: float = 0.3,
                   skip_prob: float = 0.3, li_prob: float = 0.2, hot_prob: float = 0.35,
                   w_bits: tuple[int, int] = (2, 8), input_kind: str | None = None,
                   fmt: Format | None = None, ssm_max_n: int | None = None,
                   ssm_max_m: int | None = None) -> Network:
    """A random valid :class:`Network` drawn from ``rng``.

    Limits: ``max_lif`` LIF layers (at least one), ``max_ssm`` SSM layers (present
    with probability ``ssm_prob``), layer / input sizes in ``1..max_size``
    (SSM ``n``, ``m`` too), ``w_bits`` range of the weight width.  The
    probabilities set how often a layer gets extra recurrent (``recurrent_prob``)
    and skip (``skip_prob``) edges, how often a LIF layer is a non-spiking LI
    readout (``li_prob``) and how often the whole network is "hot" (``hot_prob``,
    narrow widths and extreme values to hit the saturations).  ``input_kind``
    forces ``"spike"`` or ``"int"``; ``fmt`` fixes the widths (a hardware build's
    generics) instead of drawing them, ``acc_bits`` excepted.  ``acc_bits`` is set
    to what the network
    needs (sometimes exactly, sometimes with slack).  ``ssm_max_n`` / ``ssm_max_m``
    (a hardware build's SSM limits) cap ``n`` / ``m`` and make the extremes (1 and
    the cap) common, so that a few dozen networks cover both.
    """
    hot = rng.random() < hot_prob
    fmt = random_format(rng, w_bits=w_bits, hot=hot) if fmt is None \
        else dataclasses.replace(fmt, acc_bits=48)
    w_lo, w_hi = signed_range(fmt.w_bits)
    u_lo, u_hi = signed_range(fmt.u_bits)
    c_lo, c_hi = signed_range(fmt.in_bits)
    one = fmt.one
    extreme = 0.3 if hot else 0.05

    input_kind = input_kind or rng.choice(("spike", "int"))
    input_size = rng.randint(1, max_size)
    n_lif = rng.randint(1, max_lif)
    n_ssm = rng.randint(1, max_ssm) if max_ssm > 0 and rng.random() < ssm_prob else 0
    kinds = ["lif"] * n_lif + ["ssm"] * n_ssm
    rng.shuffle(kinds)

    # Pass 1: names, kinds, spiking flags and sizes (recurrent edges may read later layers).
    shape: list[dict] = []
    for index, kind in enumerate(kinds):
        name = f"{kind}{index}"
        sources = [input_size] + [s["out"] for s in shape if s["source"]]
        if kind == "lif":
            size = rng.randint(1, max_size)
            spiking = rng.random() >= li_prob
            shape.append({"name": name, "kind": kind, "size": size, "out": size,
                          "spiking": spiking, "source": spiking})
        else:
            # Often match an earlier source's size so that k / v / q can read it.
            n = rng.choice(sources) if rng.random() < 0.7 else rng.randint(1, max_size)
            m = rng.choice(sources) if rng.random() < 0.7 else rng.randint(1, max_size)
            if ssm_max_n is not None:
                n = rng.choice((1, ssm_max_n)) if rng.random() < 0.35 else min(n, ssm_max_n)
            if ssm_max_m is not None:
                m = rng.choice((1, ssm_max_m)) if rng.random() < 0.35 else min(m, ssm_max_m)
            shape.append({"name": name, "kind": kind, "n": n, "m": m, "out": m,
                          "spiking": False, "source": True})
    out_of = {INPUT: input_size, **{s["name"]: s["out"] for s in shape}}

    def feed_forward(index: int) -> list[str]:
        return [INPUT] + [s["name"] for s in shape[:index] if s["source"]]

    def weights(rows: int, cols: int) -> torch.Tensor:
        density = rng.choice((0.2, 0.5, 1.0))
        return _tensor([[_value(rng, w_lo, w_hi, zero=1.0 - density, extreme=extreme)
                         for _ in range(cols)] for _ in range(rows)])

    rec = [s["name"] for s in shape if s["source"]]
    layers = []
    for index, s in enumerate(shape):
        ff = feed_forward(index)
        if s["kind"] == "lif":
            size = s["size"]
            # The main feed-forward edge (usually from the previous source), skips, recurrences.
            sources = [(ff[-1] if rng.random() < 0.7 else rng.choice(ff), False)]
            while rng.random() < skip_prob:
                sources.append((rng.choice(ff), False))
            while rec and rng.random() < recurrent_prob:
                sources.append((rng.choice(rec), True))
            inputs = [Projection(src, weights(size, out_of[src]), recurrent=r)
                      for src, r in sources]
            alpha = [rng.choice((0, one, rng.randint(0, one), rng.randint(one // 2, one)))
                     for _ in range(size)]
            theta_cap = min(u_hi, rng.choice((max(1, w_hi), 2 * w_hi, 8 * w_hi, u_hi)))
            theta = [_value(rng, 1, theta_cap, extreme=extreme) for _ in range(size)]
            bias_cap = min(u_hi, max(1, w_hi // 2))
            bias = [rng.choice((u_lo, u_hi, rng.randint(u_lo, u_hi)))
                    if rng.random() < extreme / 2
                    else _value(rng, max(u_lo, -bias_cap), bias_cap, zero=0.4)
                    for _ in range(size)]
            if s["spiking"]:
                reset = rng.choice(("subtract", "zero", "none"))
                v_reset = 0 if rng.random() < 0.5 else rng.randint(u_lo // 2, u_hi // 2)
            else:
                reset, v_reset = "none", 0
            layers.append(LIFLayer(s["name"], size, _tensor(alpha), _tensor(theta),
                                   _tensor(bias), inputs, reset=reset, v_reset=v_reset,
                                   spiking=s["spiking"]))
        else:
            n, m = s["n"], s["m"]

            consts = (c_lo, c_hi, extreme)
            k, v, q = (_operand(rng, length, ff, rec, out_of, *consts) for length in (n, m, n))
            gates = [(src, False) for src in ff if src != INPUT and out_of[src] <= 8
                     and src.startswith("lif")]
            gates += [(src, True) for src in rec if out_of[src] <= 8 and src.startswith("lif")]
            if gates and rng.random() < 0.5:
                gate, gate_recurrent = rng.choice(gates)
                gate_recurrent = gate_recurrent or rng.random() < 0.25
                rows = 1 << out_of[gate]
                decay = _tensor([[_value(rng, 0, one, extreme=0.3) for _ in range(n)]
                                 for _ in range(rows)])
                mode = "selective"
            else:
                gate, gate_recurrent, mode = None, False, "fixed"
                decay = _tensor([_value(rng, 0, one, extreme=0.3) for _ in range(n)])
            if ssm_max_n is not None and rng.random() < 0.2:
                decay = torch.full_like(decay, one)  # no decay: the hardware skips idle rows
            layers.append(SSMLayer(s["name"], n, m, k, v, q, decay, mode=mode, gate=gate,
                                   gate_recurrent=gate_recurrent, y_shift=rng.randint(0, 6)))

    output = rng.choice([s["name"] for s in shape])
    net = Network(input_size=input_size, input_kind=input_kind, layers=layers, output=output,
                  fmt=fmt)
    need = max([2] + [net.required_acc_bits(layer) for layer in layers if layer.kind == "lif"])
    acc_bits = min(48, need + rng.choice((0, 0, 1, 3)))
    return Network(input_size=input_size, input_kind=input_kind, layers=layers, output=output,
                   fmt=dataclasses.replace(fmt, acc_bits=acc_bits))


def random_input(rng: random.Random, net: Network, steps: int, batch: int) -> torch.Tensor:
    """A random valid input ``[steps, batch, net.input_size]`` (int64) for ``net``.

    Spike inputs get a random firing rate per sample; int inputs a random density
    and, now and then, the extreme values of ``in_bits``.
    """
    lo, hi = (0, 1) if net.input_kind == "spike" else signed_range(net.fmt.in_bits)
    x = [[None] * batch for _ in range(steps)]
    for b in range(batch):
        density = rng.choice((0.1, 0.3, 0.6, 1.0))
        for t in range(steps):
            x[t][b] = [_value(rng, lo, hi, extreme=0.2) if rng.random() < density else 0
                       for _ in range(net.input_size)]
    return torch.tensor(x, dtype=torch.int64).reshape(steps, batch, net.input_size)


def steer(draw, seeds, coverage, *, attempts: int = 8) -> list:
    """One case per seed, steered into the bins of ``coverage`` (a
    :class:`spikeforge.golden.coverage.Coverage`) that are still empty.

    ``draw(seed, attempt)`` returns a case whose first two items are the network
    and its input ``x`` (``[T, input_size]``, one sample), or ``None`` if the draw
    does not fit.  Per seed, while a bin is empty, ``attempts`` draws are made and
    the one that hits the most empty bins is kept (the first of equals); once
    every bin is hit, the seed's first draw that fits.  A seed given as
    ``(seed, attempt)`` (see :func:`parse_cases`) is that draw, unsteered.  The
    kept case's bins are counted in ``coverage``.  Returns ``(seed, attempt,
    case)`` per seed (``case`` ``None`` when no draw fits).
    """
    chosen = []
    for item in seeds:
        seed, fixed = item if isinstance(item, tuple) else (item, None)
        best, best_gain = (fixed or 0, None), -1
        for attempt in ([fixed] if fixed is not None else range(attempts)):
            case = draw(seed, attempt)
            if case is None:
                continue
            if fixed is not None or not coverage.missing:
                best = (attempt, case)
                break
            gain = len(coverage.hits(case[0], case[1][:, None, :]) & set(coverage.missing))
            if gain > best_gain:
                best, best_gain = (attempt, case), gain
        attempt, case = best
        if case is not None:
            coverage.observe(case[0], case[1][:, None, :])
        chosen.append((seed, attempt, case))
    return chosen


def parse_cases(text: str) -> list:
    """Seeds from ``"0-40"`` (``range(0, 40)``), ``"17"``, ``"17.3"`` (seed 17's draw
    3, unsteered) or a comma list of them."""
    cases: list = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cases.extend(range(int(lo), int(hi)))
        elif "." in part:
            seed, attempt = part.split(".", 1)
            cases.append((int(seed), int(attempt)))
        else:
            cases.append(int(part))
    return cases


def small_model_file(path, *, hidden: int = 8, timesteps: int = 2):
    """Write a valid digits model file (an untrained, quantized twin: no training
    needed) to ``path`` and return ``path``."""
    from spikeforge.golden.modelfile import save_model
    from spikeforge.golden.quantize import to_integer
    from spikeforge.golden.train import build_twin, config_for

    torch.manual_seed(0)
    net = to_integer(build_twin(config_for("digits", hidden=hidden, timesteps=timesteps)))
    meta = {"task": "digits", "encoding": "rate", "timesteps": timesteps, "encoding_seed": 0,
            "readout": "last"}
    save_model(path, net, meta)
    return path
