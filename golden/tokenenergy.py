"""Energy per token of a sequence model beside a transformer with a KV cache (an
ESTIMATE, with the table and rules of :mod:`.energy`).

The sequence model's token mixer is an SSM layer: per token it writes and reads
its ``n x m`` state and decays every cell, whatever the context length.  Its
comparison is the same model with each SSM layer replaced by one head of softmax
attention of the same width (keys and queries of ``n`` values, values of ``m``)
over a KV cache of the last ``L`` tokens, 8-bit keys, values and weights; every
other layer costs what it costs in the spiking model.  Per token and attention
layer at context ``L``::

    scores     L * n   MACs (8-bit multiply, acc_bits add)
    softmax    L       fp32 multiply + fp32 add (an exponential and its sum)
    mixing     L * m   MACs (8-bit multiply, acc_bits add)
    cache      (n + m) * 8 bits written, L * (n + m) * 8 bits read, from an SRAM of
               the cache's size, L * (n + m) bytes (the table's size class)

so its cost grows with ``L`` (the reads also get dearer per bit as the cache
outgrows an SRAM class) while the SSM's does not.  The projections that make
``k``, ``v`` and ``q`` are the spiking model's own layers in both (counted once,
in ``rest``), so the comparison isolates the token mixer.  ``crossover_context``
is the shortest context at which the attention layers cost more than the SSM
layers they replace.
"""

from __future__ import annotations

from .energy import TABLE, _sram_per_bit, _width, estimate
from .integer import Network

__all__ = ["DEFAULT_CONTEXTS", "attention_pj", "token_energy"]

DEFAULT_CONTEXTS = (64, 256, 1024)
_MOST_CONTEXT = 1 << 20


def attention_pj(n: int, m: int, context: int, *, acc_bits: int) -> dict[str, float]:
    """pJ per token of one softmax-attention head with a KV cache of ``context``
    tokens, keys and queries of ``n`` values and values of ``m`` (module docstring)."""
    for name, value in (("n", n), ("m", m), ("context", context), ("acc_bits", acc_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    mac = _width(TABLE["int_mult"], 8) + _width(TABLE["int_add"], acc_bits)
    cache_bits = context * (n + m) * 8
    per_bit = _sram_per_bit(cache_bits / 8)
    return {"scores": context * n * mac,
            "softmax": context * (TABLE["fp32_mult"] + TABLE["fp32_add"]),
            "mixing": context * m * mac,
            "cache": ((n + m) * 8 + cache_bits) * per_bit}


def _attention_total(ssm_layers, context: int, acc_bits: int) -> float:
    return sum(sum(attention_pj(la.n, la.m, context, acc_bits=acc_bits).values())
               for la in ssm_layers)


def token_energy(net: Network, counts: dict, *, contexts=DEFAULT_CONTEXTS) -> dict:
    """Per token: the sequence model's estimate (from ``counts``, as for
    :func:`.energy.estimate`: golden or hardware counters; a sample's steps are its
    tokens) beside the KV-cache transformer at each context length, JSON-able."""
    ssm_layers = [layer for layer in net.layers if layer.kind == "ssm"]
    if not ssm_layers:
        raise ValueError("the model has no SSM layer: there is no token mixer to set "
                         "beside attention")
    contexts = list(contexts)
    if not contexts or any(isinstance(c, bool) or not isinstance(c, int)
                           or not 1 <= c <= _MOST_CONTEXT for c in contexts):
        raise ValueError(f"contexts must be integers in 1..{_MOST_CONTEXT}, not {contexts!r}")
    e = estimate(net, counts)
    steps = e["timesteps"]
    total = e["snn"]["total_pj"] / steps
    ssm = e["snn"]["energy_pj"]["ssm"] / steps
    rest = total - ssm
    acc_bits = net.fmt.acc_bits
    rows = []
    for context in contexts:
        attention = _attention_total(ssm_layers, context, acc_bits)
        rows.append({"context": context, "attention_pj_per_token": attention,
                     "transformer_pj_per_token": rest + attention,
                     "ratio": total / (rest + attention)})
    crossover = _least(lambda c: _attention_total(ssm_layers, c, acc_bits) > ssm)
    return {
        "estimate": True,
        "label": e["label"],
        "source": e["source"]["citation"],
        "counts_source": e["counts_source"],
        "tokens": e["samples"] * steps,
        "ssm_layers": [{"name": la.name, "n": la.n, "m": la.m} for la in ssm_layers],
        "snn_pj_per_token": total,
        "ssm_pj_per_token": ssm,
        "rest_pj_per_token": rest,
        "contexts": rows,
        "crossover_context": crossover,
    }


def _least(dearer) -> int | None:
    """The least context in 1..2**20 for which ``dearer(context)`` holds, or None
    (attention's cost only grows with the context, so it holds for every longer one)."""
    if not dearer(_MOST_CONTEXT):
        return None
    lo, hi = 0, _MOST_CONTEXT   # dearer(hi) holds; lo is 0 or a context where it does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if dearer(mid) else (mid, hi)
    return hi
