"""Training, quantization and evaluation of the task models.

``digits`` (intra-token): input 64 pixels (rate-coded spikes, or direct or
delta-coded int8: :mod:`.tasks`) -> LIF hidden layer (and optionally a second,
``hidden2``) -> readout, over ``T``
virtual steps.  ``event-digits``: the same network on the emulated event camera's
recordings of the digits, 64 pooled blocks in ``T`` time bins (event counts as int
inputs, or spikes: :func:`.tasks.event_digits`).  The readout is an
LI layer (decision: argmax of its last membrane) or a spiking LIF layer
(decision: argmax of the spike counts; every gradient then passes a spike,
which is what the surrogate experiment needs).

``recall`` (inter-token): input tokens -> ``key`` and ``value`` LIF layers
(memoryless, alpha = 0) -> SSM ``mem`` with ``k = key``, ``v = value``,
``q = key``; in selective mode a small ``gate`` LIF layer picks the decay row.
The decision is the argmax of ``y`` at the query (last) token.

Activity regularization (every task; ``activity_weight`` ``lambda``,
``target_rate`` ``rho``): the loss adds, over the regularized layers ``L``
(:data:`ACTIVITY_LAYERS`: the hidden spiking layers), each layer's squared
distance of its firing rate from the target::

    r_l = sum_{(t,b) in M} sum_i s_l[t, b, i] / (n_l |M|)    (spikes per neuron per step)
    P   = lambda * sum_{l in L} (r_l - rho)**2

``s_l`` the layer's spikes, ``n_l`` its size, ``M`` the counted (step, sample)
pairs: every step of the intra-token tasks, the non-blank tokens of ``recall``.
Above the target it lowers the spike count (sparsity, fewer synaptic events);
below it raises it (recall's default, ``rho = 1/16``, ``lambda = 256``: one spike
per token in a 16-neuron layer, which keeps the key layer from falling silent
early in training; all-zero readouts are a local minimum of the loss).

Every model is trained as a float twin with surrogate gradients, then
fine-tuned in the twin's integer-exact mode (QAT) and exported with
:func:`~spikeforge.golden.quantize.to_integer`; the report gives how often the
float twin and the integer model agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from . import tasks
from .integer import Format, Network
from .quantize import READOUTS, enter_integer_mode, predict, to_integer
from .twin import SURROGATES, TwinLIF, TwinNetwork, TwinSSM

__all__ = ["DigitsConfig", "EventDigitsConfig", "RecallConfig", "train", "evaluate", "TASKS",
           "ACTIVITY_LAYERS", "task_data", "config_for", "activity_penalty", "firing_rates"]

TASKS = ("digits", "recall", "event-digits")
ACTIVITY_LAYERS = {"digits": ("hidden", "hidden2"), "event-digits": ("hidden", "hidden2"),
                   "recall": ("key", "value")}
"""The layers the activity penalty regularizes, per task, those the model has
(module docstring)."""
_INPUT_GAIN = {"rate": 1.0, "spikes": 1.0, "direct": 0.25, "delta": 0.5, "counts": 1.0}
"""The hidden layer's initial weight scale per input encoding (larger inputs, smaller
weights)."""
LOGIT_SCALE = 8.0


@dataclass
class DigitsConfig:
    timesteps: int = 8
    hidden: int = 128
    hidden2: int = 0  # a second hidden LIF layer of this size (0: none)
    encoding: str = "rate"
    readout: str = "membrane"  # or "spikes"
    surrogate: str = "fast-sigmoid"
    epochs: int = 40
    qat_epochs: int = 5
    lr: float = 5e-3
    batch: int = 64
    seed: int = 0
    w_bits: int = 8
    encoding_seed: int = 0
    activity_weight: float = 0.0
    target_rate: float = 0.0

    task = "digits"


@dataclass
class EventDigitsConfig(DigitsConfig):
    timesteps: int = 9  # time bins of the 300 ms recording
    encoding: str = "counts"  # or "spikes"
    event_step: int = 40  # events per input level
    # Post-training quantization: QAT did not help here on average (it overfits a
    # training loss already near zero).
    qat_epochs: int = 0

    task = "event-digits"


@dataclass
class RecallConfig:
    length: int = 32
    n_pairs: int = 8
    n_keys: int = 16
    n_values: int = 16
    mode: str = "fixed"  # or "selective"
    gate_bits: int = 2
    embed_init: str = "identity"  # or "random"
    activity_weight: float = 256.0
    target_rate: float = 1.0 / 16.0
    surrogate: str = "fast-sigmoid"
    epochs: int = 6
    qat_epochs: int = 0  # post-training quantization is already lossless here
    lr: float = 3e-3
    batch: int = 128
    train_size: int = 2048
    test_size: int = 1000
    seed: int = 0
    w_bits: int = 8

    task = "recall"


def _check(cfg) -> None:
    if cfg.surrogate not in SURROGATES:
        raise ValueError(f"unknown surrogate {cfg.surrogate!r}; choose one of {SURROGATES}")
    if not 2 <= cfg.w_bits <= 16:
        raise ValueError(f"w_bits must be in 2..16, not {cfg.w_bits!r}")
    weight = cfg.activity_weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
            not 0 <= weight < float("inf"):
        raise ValueError(f"activity_weight must be a finite number >= 0, not {weight!r}")
    rate = cfg.target_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"target_rate must be a firing rate in [0, 1] (spikes per neuron "
                         f"per step), not {rate!r}")
    if isinstance(cfg, EventDigitsConfig):
        step = cfg.event_step
        if isinstance(step, bool) or not isinstance(step, int) or not 1 <= step <= 1 << 20:
            raise ValueError(f"event_step must be an integer in 1..{1 << 20} (events per "
                             f"input level), not {step!r}")
    if isinstance(cfg, DigitsConfig):
        if cfg.encoding not in encodings(cfg.task):
            raise ValueError(f"unknown encoding {cfg.encoding!r} for the {cfg.task} task; "
                             f"choose one of {encodings(cfg.task)}")
        if cfg.readout not in ("membrane", "spikes"):
            raise ValueError(f"readout must be 'membrane' or 'spikes', not {cfg.readout!r}")
        for name, lo in (("hidden", 1), ("hidden2", 0)):
            size = getattr(cfg, name)
            if isinstance(size, bool) or not isinstance(size, int) or not lo <= size <= 4096:
                raise ValueError(f"{name} must be an integer in {lo}..4096, not {size!r}")
        if not 1 <= cfg.timesteps <= 1024:
            raise ValueError(f"timesteps must be in 1..1024, not {cfg.timesteps!r}")
    elif cfg.mode not in ("fixed", "selective"):
        raise ValueError(f"mode must be 'fixed' or 'selective', not {cfg.mode!r}")
    elif cfg.embed_init not in ("identity", "random"):
        raise ValueError(f"embed_init must be 'identity' or 'random', not {cfg.embed_init!r}")


def encodings(task: str) -> tuple[str, ...]:
    """The input encodings of an intra-token task."""
    return tasks.EVENT_ENCODINGS if task == "event-digits" else tasks.ENCODINGS


def input_kind(encoding: str) -> str:
    """The network input kind of an encoding: ``spike`` (0/1) or ``int``."""
    return "spike" if encoding in ("rate", "spikes") else "int"


# ------------------------------------------------------------------ builders
def build_twin(cfg) -> TwinNetwork:
    fmt = Format(w_bits=cfg.w_bits)
    if isinstance(cfg, DigitsConfig):
        layers = [TwinLIF("hidden", cfg.hidden, [("input", 64, False)],
                          gain=_INPUT_GAIN[cfg.encoding])]
        last = ("hidden", cfg.hidden, False)
        if cfg.hidden2:
            layers.append(TwinLIF("hidden2", cfg.hidden2, [last]))
            last = ("hidden2", cfg.hidden2, False)
        if cfg.readout == "membrane":
            out = TwinLIF("out", 10, [last], spiking=False, reset="none", beta=1.0,
                          learn_beta=False)
        else:
            out = TwinLIF("out", 10, [last], gain=2.0)
        return TwinNetwork(input_size=64, input_kind=input_kind(cfg.encoding),
                           layers=[*layers, out], output="out", fmt=fmt,
                           surrogate=cfg.surrogate)
    d = cfg.n_keys + cfg.n_values + 1
    memoryless = dict(beta=0.0, learn_beta=False, reset="zero", gain=6.0)
    layers = [TwinLIF("key", cfg.n_keys, [("input", d, False)], **memoryless),
              TwinLIF("value", cfg.n_values, [("input", d, False)], **memoryless)]
    gate = None
    if cfg.mode == "selective":
        layers.append(TwinLIF("gate", cfg.gate_bits, [("input", d, False)], **memoryless))
        gate = ("gate", cfg.gate_bits, False)
    if cfg.embed_init == "identity":
        # Start the key/value layers as one-hot embeddings (plus noise); every
        # weight is still trained.  From "random" the key layer does not yet
        # learn a code that matches between write and query tokens (open issue).
        with torch.no_grad():
            for layer, offset, size in ((layers[0], 0, cfg.n_keys),
                                        (layers[1], cfg.n_keys, cfg.n_values)):
                w = layers[0].weights[0].new_empty(size, d).normal_(0.0, 0.1)
                w[:, offset:offset + size] += 2.0 * torch.eye(size)
                layer.weights[0].copy_(w)
    layers.append(TwinSSM("mem", cfg.n_keys, cfg.n_values,
                          {"k": ("key", False), "v": ("value", False), "q": ("key", False)},
                          mode=cfg.mode, gate=gate, decay=1.0))
    return TwinNetwork(input_size=d, input_kind="spike", layers=layers, output="mem", fmt=fmt,
                       surrogate=cfg.surrogate)


def readout_rule(cfg) -> str:
    return "sum" if isinstance(cfg, DigitsConfig) and cfg.readout == "spikes" else "last"


_META_INTS = {
    "digits": {"timesteps": (1, 1024), "encoding_seed": (-2**63, 2**63 - 1)},
    "event-digits": {"timesteps": (1, 1024), "event_step": (1, 1 << 20)},
    "recall": {"length": (1, 1024), "n_pairs": (1, 256), "n_keys": (1, 256),
               "n_values": (1, 256), "train_size": (1, 100_000), "test_size": (1, 100_000),
               "seed": (-2**62, 2**62)},
}


MAX_SPLIT_VALUES = 1 << 24
"""The most input values (samples x steps x inputs) a task model's metadata may ask a
split to have (128 MB as int64: a recall model of length 128 evaluated on its 2048
training sequences is 8.7 M; the digits at T = 1024 would be 23.5 M)."""


def check_task_meta(meta: dict, split: str | None = None, net: Network | None = None) -> None:
    """Raise ValueError naming the first field of a task model's metadata that
    :func:`task_data` and the readout cannot use (its type, range, or a split larger
    than :data:`MAX_SPLIT_VALUES` values: ``split``, or either one), or, given the
    network ``net``, an input that is not the task's: a model file may carry any JSON
    there."""
    task = meta.get("task")
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not one of {TASKS}")
    for name, (lo, hi) in _META_INTS[task].items():
        value = meta.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValueError(f"metadata {name}={value!r} is not an integer in {lo}..{hi}")
    if task != "recall" and meta.get("encoding") not in encodings(task):
        raise ValueError(f"metadata encoding={meta.get('encoding')!r} is not one of "
                         f"{encodings(task)}")
    if meta.get("readout") not in READOUTS:
        raise ValueError(f"metadata readout={meta.get('readout')!r} is not one of {READOUTS}")
    if task == "recall":
        if meta["n_pairs"] > meta["n_keys"]:
            raise ValueError(f"metadata n_pairs={meta['n_pairs']} is more than "
                             f"n_keys={meta['n_keys']} (the keys of a sequence are distinct)")
        if meta["length"] < meta["n_pairs"] + 1:
            raise ValueError(f"metadata length={meta['length']} cannot hold "
                             f"n_pairs={meta['n_pairs']} writes and a query")
        width, kind = meta["n_keys"] + meta["n_values"] + 1, "spike"
    else:
        width, kind = 64, input_kind(meta["encoding"])
    for name in (split,) if split else ("test", "train"):
        if task != "recall":
            count, steps = len(tasks.digits(name).y), meta["timesteps"]
            given = f"timesteps={steps}"
        else:
            count, steps = meta[f"{name}_size"], meta["length"]
            given = f"{name}_size={count}, length={steps}"
        if count * steps * width > MAX_SPLIT_VALUES:
            raise ValueError(f"metadata {given}: the {name} split would be {count} samples x "
                             f"{steps} steps x {width} inputs = {count * steps * width} values, "
                             f"more than {MAX_SPLIT_VALUES}")
    if net is not None and (net.input_size, net.input_kind) != (width, kind):
        raise ValueError(f"the network takes {net.input_size} {net.input_kind} inputs, but "
                         f"its metadata's {task} task gives {width} {kind} inputs")


def task_data(meta: dict, split: str, *, size: int | None = None):
    """The encoded inputs ``[T, B, D]`` and labels of a task split, as ``meta`` describes."""
    if meta["task"] == "digits":
        data = tasks.digits(split)
        x = data.encode(meta["encoding"], meta["timesteps"], seed=meta["encoding_seed"])
        return x, torch.from_numpy(data.y)
    if meta["task"] == "event-digits":
        return tasks.event_digits(split, meta["timesteps"], step=meta["event_step"],
                                  encoding=meta["encoding"])
    if meta["task"] == "recall":
        count = size or (meta["train_size"] if split == "train" else meta["test_size"])
        seed = meta["seed"] * 2 + (1 if split == "train" else 2) + 1000
        task = tasks.recall(count, length=meta["length"], n_pairs=meta["n_pairs"],
                            n_keys=meta["n_keys"], n_values=meta["n_values"], seed=seed)
        return task.x, task.y
    raise ValueError(f"unknown task {meta['task']!r}; choose one of {TASKS}")


def _logits(twin: TwinNetwork, out: dict, readout: str) -> torch.Tensor:
    name = twin.output
    layer = twin.layer(name)
    if layer.kind == "ssm":
        # Normalised by the largest readout so that silencing the network (all y
        # small) cannot lower the loss; only the right value being largest can.
        y = out[f"{name}.y_wide"][-1]
        return y / (y.abs().amax(dim=1, keepdim=True) + 1.0) * LOGIT_SCALE
    if readout == "sum":
        return out[name].sum(dim=0) * 2.0
    final = out[name][-1]
    if layer.scale is not None:  # integer units: bring back to float units for the loss
        final = final / layer.scale
    return final


def firing_rates(out: dict, layers, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """``r_l`` of the module docstring: each layer's spikes per neuron per counted
    step, ``mask`` ``[T, B]`` (1: counted)."""
    counted = mask.sum().clamp(min=1)
    return {name: (out[name].sum(dim=2) * mask).sum() / counted / out[name].shape[2]
            for name in layers}


def activity_penalty(out: dict, x: torch.Tensor, cfg) -> torch.Tensor:
    """The activity penalty ``P`` (module docstring) of a twin's outputs ``out`` on
    the inputs ``x``, with ``cfg``'s weight, target and task."""
    if cfg.activity_weight == 0:
        return torch.zeros(())
    layers = [name for name in ACTIVITY_LAYERS[cfg.task] if name in out]
    dtype = out[layers[0]].dtype
    mask = (x != 0).any(dim=2).to(dtype) if cfg.task == "recall" else \
        torch.ones(x.shape[:2], dtype=dtype)
    penalty = torch.zeros(())
    for rate in firing_rates(out, layers, mask).values():
        penalty = penalty + (rate - cfg.target_rate) ** 2
    return cfg.activity_weight * penalty


def _fit(twin, x, y, cfg, epochs: int, *, desc: str, progress: bool) -> list[float]:
    readout = readout_rule(cfg)
    params = [p for p in twin.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = max(1, epochs * -(-x.shape[1] // cfg.batch))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = []
    n = x.shape[1]
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=False)
    for _ in bar:
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, cfg.batch):
            idx = order[i:i + cfg.batch]
            out = twin(x[:, idx])
            loss = nn.functional.cross_entropy(_logits(twin, out, readout), y[idx])
            loss = loss + activity_penalty(out, x[:, idx], cfg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def _twin_predict(twin, x, readout) -> torch.Tensor:
    with torch.no_grad():
        out = twin(x)
    return predict(out[twin.output], readout)


def train(cfg, *, progress: bool = True) -> tuple[Network, dict]:
    """Train the task model of ``cfg``; return the integer network and its metadata."""
    _check(cfg)
    torch.manual_seed(cfg.seed)
    meta = {"task": cfg.task, **{k: v for k, v in dataclasses.asdict(cfg).items()}}
    meta["readout"] = readout_rule(cfg)
    x, y = task_data(meta, "train")
    xt, yt = task_data(meta, "test")
    twin = build_twin(cfg)
    losses = _fit(twin, x, y, cfg, cfg.epochs, desc=f"train {cfg.task}", progress=progress)
    float_pred = _twin_predict(twin, xt, meta["readout"])
    ptq = to_integer(twin)
    ptq_pred = predict(ptq.run(xt, record=False).outputs[ptq.output], meta["readout"])
    enter_integer_mode(twin)
    qat_losses = _fit(twin, x.double(), y, cfg, cfg.qat_epochs, desc="QAT", progress=progress)
    net = to_integer(twin)
    int_pred = predict(net.run(xt, record=False).outputs[net.output], meta["readout"])
    qat_pred = _twin_predict(twin, xt, meta["readout"])
    meta["training"] = {
        "loss": losses, "qat_loss": qat_losses,
        "accuracy_float": _acc(float_pred, yt),
        "accuracy_ptq": _acc(ptq_pred, yt),
        "accuracy_int": _acc(int_pred, yt),
        # How often the decisions agree on the test split.
        "agreement_float_vs_ptq": _acc(float_pred, ptq_pred),
        "agreement_float_vs_int": _acc(float_pred, int_pred),
        "agreement_qat_twin_vs_int": _acc(qat_pred, int_pred),
    }
    return net, meta


def _acc(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a == b).double().mean())


def evaluate(net: Network, meta: dict, *, split: str = "test", batch: int = 512) -> dict:
    """Accuracy of the integer model on a split, with the synaptic-operation count."""
    x, y = task_data(meta, split)
    correct, synops, ssm_ops = 0, 0, 0
    for i in range(0, x.shape[1], batch):
        trace = net.run(x[:, i:i + batch], record=False)
        pred = predict(trace.outputs[net.output], meta["readout"])
        correct += int((pred == y[i:i + batch]).sum())
        synops += int(trace.synops.sum())
        ssm_ops += int(trace.ssm_ops.sum())
    n = x.shape[1]
    report = {"task": meta["task"], "accuracy": correct / n, "samples": n,
              "timesteps": int(x.shape[0]), "w_bits": net.fmt.w_bits,
              "synops_per_sample": synops / n}
    if ssm_ops:
        report["ssm_ops_per_sample"] = ssm_ops / n
    if meta["task"] == "recall":
        report["chance"] = 1.0 / meta["n_values"]
    return report


CONFIGS = {"digits": DigitsConfig, "recall": RecallConfig, "event-digits": EventDigitsConfig}


def config_for(task: str, **overrides):
    """A config for ``task`` with ``overrides`` (``None`` values are ignored)."""
    if task not in CONFIGS:
        raise ValueError(f"unknown task {task!r}; choose one of {TASKS}")
    cls = CONFIGS[task]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in overrides.items() if v is not None and k in names})

