"""From an snnTorch module to the integer model, from Python (``spikeforge.from_snntorch``).

The path: snnTorch's own NIR export (``snntorch.export_nir.export_to_nir``, which
needs ``nirtorch``) of a copy of the module, then spikeforge's NIR import
(:func:`.nir.import_nir`).  What NIR loses is read from the module itself:

* the reset: snnTorch's export writes ``v_reset = 0`` whatever ``reset_mechanism``
  was.  Each neuron node is marked with the module's reset (node metadata
  ``spikeforge_reset``): ``"subtract"`` (snnTorch's default, with its default
  ``reset_delay=True``) becomes ``subtract-next``, the integer ``subtract`` plus a
  recurrent correction edge, exact (:mod:`.nirreset`); with ``reset_delay=False`` the
  integer ``subtract``; ``"zero"`` and ``"none"`` as they are;
* a scalar ``beta``, ``alpha`` or ``threshold``: broadcast to one value per neuron
  before the export (nir's type inference refuses scalars); ``beta`` and ``alpha``
  clamped to ``[0, 1]`` as snnTorch's forward does.

Modules: ``Linear``, ``Conv2d``, ``AvgPool2d``, ``Flatten`` (as snnTorch exports them)
and ``Leaky``, ``Synaptic``, directly inside the network (a ``Sequential`` or a
module whose ``forward`` calls its own children).  Anything else is refused by name
(snnTorch's export would drop it or fail).  Options the integer model cannot follow
(``graded_spikes_factor`` other than 1, ``inhibition``) are refused; ``state_quant``,
``reset_delay=False`` with a subtraction and ``Synaptic``'s resets, which the integer
model follows only approximately, are warned about.

At conversion, when the module keeps its state between calls (``init_hidden=True``,
so it can be stepped), the module, the imported float model and the integer model
run on the same random inputs: a float model that differs from the module's own
forward pass is warned about (a convention not carried over); the integer model's
agreement is reported (``Converted.check``).  Every warning is a
:class:`.nirreset.ConversionWarning` (issued with ``warnings.warn``) and is kept in
``Converted.warnings``.

Inputs everywhere are ``[T, B, D]`` (time first, ``D`` the flattened input), 0/1
spikes for a ``spike`` input; the class of a sample is the output neuron with the
most spikes over the ``T`` steps (the lowest index on ties).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .nirgraph import META_RESET, NirError
from .nirreset import SUBTRACT_NEXT, ConversionWarning

__all__ = ["from_snntorch", "Converted", "CHECK_AGREEMENT"]

CHECK_AGREEMENT = 0.999
"""Below this fraction of equal output spikes between the module and the imported
float model (float32 against float64 may flip a spike exactly at a threshold), the
conversion warns that a convention was not carried over."""

_LAYERS = ("Linear", "Conv2d", "AvgPool2d", "Flatten")
_NEURONS = ("Leaky", "Synaptic")


def _need_snntorch():
    try:
        import snntorch
        from snntorch.export_nir import export_to_nir
    except ImportError as exc:
        raise ImportError(f"from_snntorch needs snnTorch and nirtorch ({exc}); install them "
                          f"with pip install 'spikeforge[snntorch]'") from exc
    return snntorch, export_to_nir


def _modules(module: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The neuron modules, after refusing what snnTorch's export cannot map."""
    neurons = []
    for name, m in module.named_modules():
        kind = type(m).__name__
        if not name:
            if kind in _NEURONS + _LAYERS:
                raise ValueError(f"the network is a single {kind}; wrap it in a "
                                 f"torch.nn.Sequential with the layers around it")
            continue
        if "." in name:
            continue  # inside a refused container (below)
        if kind in _NEURONS:
            neurons.append((name, m))
        elif kind not in _LAYERS:
            hint = ""
            if kind.startswith("Dropout"):
                hint = " (a Dropout is the identity in evaluation: remove it)"
            elif any(True for _ in m.children()):
                hint = " (nested modules: put the layers directly in the network)"
            raise ValueError(f"module {name!r} is a {kind}, which snnTorch's NIR export does "
                             f"not map{hint}; supported: {', '.join(_LAYERS + _NEURONS)}, "
                             f"directly inside the network")
    if not neurons:
        raise ValueError("the network has no Leaky or Synaptic module")
    return neurons


def _input_shape(module: torch.nn.Module, input_shape) -> tuple[int, ...]:
    if input_shape is None:
        first = next((m for _, m in module.named_modules() if not any(True for _ in
                                                                     m.children())), None)
        if type(first).__name__ != "Linear":
            raise ValueError("input_shape is needed: the network does not start with a Linear "
                             "(e.g. input_shape=(2, 34, 34) for a convolutional network)")
        return (int(first.in_features),)
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0
                            for n in shape):
        raise ValueError(f"input_shape must be positive integers, not {input_shape!r}")
    return shape


def _sizes(net: torch.nn.Module, neurons: list, shape: tuple[int, ...]) -> dict[str, tuple]:
    """Each neuron module's shape (its input's, without the batch), from one forward pass."""
    seen: dict[str, tuple] = {}

    def hook(name):
        def record(_module, args):
            seen.setdefault(name, tuple(args[0].shape[1:]))  # (returns None: args unchanged)
        return record

    hooks = [m.register_forward_pre_hook(hook(name)) for name, m in neurons]
    try:
        with torch.no_grad():
            net(torch.zeros(1, *shape))
    except Exception as exc:  # the user's forward may raise anything
        raise ValueError(f"running the network on zeros of shape {[1, *shape]} (batch, "
                         f"input_shape) failed: {type(exc).__name__}: {exc}") from exc
    finally:
        for h in hooks:
            h.remove()
    missing = [name for name, _ in neurons if name not in seen]
    if missing:
        raise ValueError(f"module {missing[0]!r} was not called by the network's forward")
    return seen


def _copy(module: torch.nn.Module) -> torch.nn.Module:
    """A deep copy in evaluation mode; the hidden states a training step left with a
    gradient history (snnTorch's ``mem``, ``syn``, ...) are copied detached."""
    memo = {id(v): v.detach().clone() for m in module.modules()
            for v in [*vars(m).values(), *m.buffers(recurse=False)]
            if isinstance(v, torch.Tensor) and not v.is_leaf}
    return copy.deepcopy(module, memo).eval()


def _set(m: torch.nn.Module, attr: str, value: torch.Tensor) -> None:
    old = getattr(m, attr)
    if isinstance(old, torch.nn.Parameter):
        value = torch.nn.Parameter(value, requires_grad=False)
    setattr(m, attr, value)


def _prepare(name: str, m: torch.nn.Module, shape: tuple, notes: list, warns: list,
             exact_reset: bool) -> str:
    """Broadcast and clamp the module's parameters in place (a copy); returns the reset
    to mark its NIR node with."""
    kind = type(m).__name__
    size = math.prod(shape)
    factor = float(torch.as_tensor(m.graded_spikes_factor).reshape(-1)[0])
    if factor != 1.0:
        raise ValueError(f"module {name!r}: graded_spikes_factor={factor:g}; the integer "
                         f"model's spikes are 0/1 (use 1)")
    if getattr(m, "inhibition", False):
        raise ValueError(f"module {name!r}: inhibition=True (only the strongest neuron "
                         f"spikes); the integer model has no such rule")
    if getattr(m, "state_quant", False):
        warns.append(f"module {name!r}: state_quant quantizes snnTorch's state; the integer "
                     f"model uses its own quantization, not that one")
    said = []
    for attr in ("beta", "alpha", "threshold") if kind == "Synaptic" else ("beta", "threshold"):
        value = getattr(m, attr).detach().to(torch.float32)
        if value.numel() == 1:
            value = value.reshape(()).expand(size).clone()
            said.append(f"{attr} {float(value[0]):g} (scalar, broadcast)")
        elif value.numel() != size:
            raise ValueError(f"module {name!r}: {attr} has {value.numel()} values for "
                             f"{size} neurons")
        else:
            value = value.reshape(size).clone()
            said.append(f"{attr} {float(value.min()):g}..{float(value.max()):g}")
        if attr != "threshold" and (value.min() < 0 or value.max() > 1):
            said[-1] += " (clamped to [0, 1], as snnTorch's forward does)"
            value = value.clamp(0, 1)
        _set(m, attr, value)
    mechanism = str(m.reset_mechanism)
    delay = bool(getattr(m, "reset_delay", True))
    reset = {"zero": "zero", "none": "none"}.get(
        mechanism, SUBTRACT_NEXT if delay and exact_reset else "subtract")
    if mechanism == "subtract" and delay and not exact_reset:
        warns.append(f"module {name!r}: exact_reset=False: the integer subtract without the "
                     f"correction edge subtracts the threshold before the decay, so a membrane "
                     f"after a spike is (1 - beta) threshold higher than snnTorch's")
    if mechanism not in ("subtract", "zero", "none"):
        raise ValueError(f"module {name!r}: reset_mechanism={mechanism!r} is not one of "
                         f"'subtract', 'zero', 'none'")
    if mechanism == "subtract" and not delay:
        warns.append(f"module {name!r}: reset_delay=False with reset_mechanism='subtract': "
                     f"snnTorch's spike test then also subtracts the threshold while the "
                     f"membrane left after a reset is still above it; the integer subtract "
                     f"does not (they differ where a membrane passes twice its threshold)")
    if kind == "Synaptic" and mechanism == "zero":
        warns.append(f"module {name!r}: a Synaptic with reset_mechanism='zero' zeroes the "
                     f"whole membrane of the step after a spike, that step's input included; "
                     f"the integer layer resets to 0 and adds the input (docs/nir.md 3)")
    notes.append(f"{name!r}: {kind} x{size}, {', '.join(said)}, reset_mechanism "
                 f"{mechanism!r}" + (f" (reset_delay={delay}: reset {reset!r})"
                                     if mechanism == "subtract" else ""))
    return reset


def _export(export_to_nir, net, shape: tuple, resets: dict[str, str]):
    """snnTorch's export of ``net`` with each neuron node marked with its reset."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # (nirtorch's, about itself)
            graph = export_to_nir(net, torch.zeros(*shape))  # (it prints its own warnings)
    except Exception as exc:  # nirtorch / nir raise many kinds
        raise NirError(f"snnTorch's NIR export failed: {type(exc).__name__}: {exc} (it "
                       f"traces the calls of the network's modules: an operation between "
                       f"them in forward, such as x * 3, breaks the trace)") from exc
    for name, reset in resets.items():
        node = graph.nodes.get(name)
        if node is None:
            raise NirError(f"snnTorch's NIR export has no node for module {name!r} (nodes: "
                           f"{', '.join(graph.nodes)})")
        node.metadata = {**(getattr(node, "metadata", None) or {}), META_RESET: reset}
    return graph


def _as_input(x, what: str = "x") -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if x.dim() != 3:
        raise ValueError(f"{what} must be [T, B, D] (time first), not shape {list(x.shape)}")
    return x


def _classes(spikes: torch.Tensor) -> torch.Tensor:
    """Per sample, the output neuron with the most spikes (the lowest index on ties)."""
    return spikes.to(torch.float64).sum(0).argmax(-1)


@dataclass
class Converted:
    """An snnTorch module converted to the integer model (module docstring).

    ``net``: the integer :class:`.integer.Network`; ``imported``: the
    :class:`.nir.NirImport` (float model, scales, meta); ``graph``: the NIR graph
    (snnTorch's export with the resets marked; :meth:`save_nir` writes it);
    ``notes``: what was read from the module; ``warnings``: what differs;
    ``check``: the conversion's own comparison (``None`` if the module cannot be
    stepped); ``module``: the prepared copy of the module that :meth:`run_module`
    steps (the original is not touched).
    """

    net: object
    imported: object
    graph: object
    module: torch.nn.Module
    input_shape: tuple[int, ...]
    steppable: bool
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    check: dict | None = None

    # ------------------------------------------------------------- running
    def run_module(self, x) -> torch.Tensor:
        """The snnTorch module's own output spikes ``[T, B, out]`` (float) on ``x``."""
        if not self.steppable:
            raise ValueError("the module keeps no state between calls (init_hidden=False), "
                             "so it cannot be run step by step here; pass its output spikes "
                             "[T, B, out] as compare(..., reference=)")
        x = _as_input(x)
        for m in self.module.modules():
            if type(m).__name__ in _NEURONS:
                m.reset_mem()
        out = []
        with torch.no_grad():
            for t in range(x.shape[0]):
                y = self.module(x[t].to(torch.float32).reshape(x.shape[1], *self.input_shape))
                out.append(y[0] if isinstance(y, (tuple, list)) else y)
        return torch.stack(out).reshape(x.shape[0], x.shape[1], -1)

    def outputs(self, x, device=None) -> torch.Tensor:
        """The integer model's output spikes ``[T, B, out]`` (int64) on ``x``: the golden
        model, or ``device`` (``spikeforge.open(url)``; the model is loaded first if it
        is not the one loaded), bit-exact with it."""
        x = _as_input(x)
        if device is None:
            return self.net.run(x, record=False).outputs[self.net.output]
        if getattr(device, "net", None) is not self.net:
            device.load(self.net)
        return device.run(x).outputs

    def predict(self, x, device=None) -> torch.Tensor:
        """Per sample, the class (the output neuron with the most spikes): ``[B]``."""
        return _classes(self.outputs(x, device))

    def compare(self, x, y=None, *, device=None, reference=None) -> dict:
        """The module (or ``reference``, its output spikes ``[T, B, out]``) against the
        imported float model, the integer model and, with ``device``, the device, on
        the same inputs ``x``: per model ``spike_agreement`` (equal output spike
        values), ``class_agreement`` (equal classes) and, with labels ``y`` (``[B]``),
        ``accuracy`` for each (``snntorch`` the module's)."""
        x = _as_input(x)
        want = self.run_module(x) if reference is None else torch.as_tensor(reference)
        out_size = self.net.layer(self.net.output).size
        if tuple(want.shape) != (x.shape[0], x.shape[1], out_size):
            raise ValueError(f"the reference has shape {list(want.shape)}, expected "
                             f"{[x.shape[0], x.shape[1], out_size]} ([T, B, out])")
        want = want.to(torch.float64)
        models = {"integer": self.outputs(x).to(torch.float64),
                  "float": self.imported.float_net.run(x)["spikes"][self.net.output]}
        if device is not None:
            models["device"] = self.outputs(x, device).to(torch.float64)
        ref_class = _classes(want)
        report = {"samples": int(x.shape[1]), "steps": int(x.shape[0]),
                  "spike_agreement": {k: float((v == want).double().mean())
                                      for k, v in models.items()},
                  "class_agreement": {k: float((_classes(v) == ref_class).double().mean())
                                      for k, v in models.items()}}
        if device is not None:
            report["device_bit_exact"] = bool(torch.equal(models["device"], models["integer"]))
        if y is not None:
            y = torch.as_tensor(np.asarray(y)).reshape(-1)
            if y.numel() != x.shape[1]:
                raise ValueError(f"y has {y.numel()} labels for {x.shape[1]} samples")
            report["accuracy"] = {"snntorch": float((ref_class == y).double().mean()),
                                  **{k: float((_classes(v) == y).double().mean())
                                     for k, v in models.items()}}
        return report

    def fit(self, board: str | None = None, x=None) -> list[dict]:
        """Whether the integer model fits each board (or the board named ``board``):
        the entries of ``spikeforge fit`` (``boards/fit.py``: ``fits``, ``limiting``,
        ``usage``, ``resources``, ``clocks``), the clocks per sample estimated on the
        inputs ``x`` (``[T, B, D]``) if given, else bounded per step."""
        from ..boards.defs import BOARDS
        from ..boards.fit import check_fit, fit_board, sample_clocks

        if board is not None and board not in BOARDS:
            raise ValueError(f"unknown board {board!r}; choose from {', '.join(BOARDS)}")
        x = None if x is None else self.net.check_input(_as_input(x))
        trace = None if x is None else self.net.run(x)
        entries = []
        for b in [BOARDS[board]] if board is not None else BOARDS.values():
            fits = check_fit(self.net, b.config)
            clocks = sample_clocks(self.net, x, trace, b.config, b.timing) \
                if x is not None and fits["fits"] else None
            entries.append(fit_board(self.net, b, clocks, None if x is None else x.shape[0],
                                     fits))
        return entries

    # -------------------------------------------------------------- saving
    def save(self, path) -> None:
        """Write the integer model file (``spikeforge run/eval/build`` take it)."""
        from .modelfile import save_model

        save_model(path, self.net, {"nir": {**self.imported.meta, "file": None},
                                    "snntorch": {"notes": list(self.notes),
                                                 "warnings": list(self.warnings)}})

    def save_nir(self, path) -> None:
        """Write the NIR graph: ``spikeforge import-nir`` reads it back to the same
        integer model with no option (the resets are in its node metadata); other
        tools read it as snnTorch's own export."""
        import nir

        nir.write(str(Path(path)), self.graph)

    def summary(self) -> str:
        """The notes, the warnings and the check, one per line."""
        lines = [f"converted: {n}" for n in self.notes]
        lines += [f"warning: {w}" for w in self.warnings]
        if self.check is not None:
            c = self.check
            lines.append(f"check on {c['samples']} random samples x {c['steps']} steps, "
                         f"output spikes equal to the module's: float model "
                         f"{c['spike_agreement']['float']:.4f}, integer model "
                         f"{c['spike_agreement']['integer']:.4f}")
        return "\n".join(lines)


def from_snntorch(module: torch.nn.Module, input_shape=None, *, fmt=None,
                  input_kind: str = "spike", headroom: float = 4.0, check_steps: int = 32,
                  check_samples: int = 16, seed: int = 0, exact_reset: bool = True
                  ) -> Converted:
    """Convert an snnTorch network to the integer model (module docstring).

    ``input_shape``: one sample's input shape without time or batch (default: the
    first ``Linear``'s ``in_features``); ``fmt``: the integer :class:`.integer.Format`
    (default ``Format()``, 8-bit weights); ``input_kind``: ``"spike"`` (0/1) or
    ``"int"``; ``headroom``: the quantizer's (docs/nir.md 2).  ``check_steps`` x
    ``check_samples`` random inputs (seed ``seed``) for the conversion's check; 0
    samples skips it.  ``exact_reset=False`` leaves out the correction edges of
    snnTorch's reset by subtraction (fewer edges and weights on the device; the
    difference is warned about).  Raises ``ValueError`` (or
    :class:`.nirgraph.NirError`) naming what cannot be converted; warns
    (:class:`.nirreset.ConversionWarning`) about what differs.
    """
    _, export_to_nir = _need_snntorch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, not {type(module).__name__}")
    for what, value in (("check_steps", check_steps), ("check_samples", check_samples)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{what} must be a non-negative integer, not {value!r}")
    neurons = _modules(module)
    shape = _input_shape(module, input_shape)
    net = _copy(module)
    neurons = [(name, net.get_submodule(name)) for name, _ in neurons]
    sizes = _sizes(net, neurons, shape)
    notes, warns = [], []
    resets = {name: _prepare(name, m, sizes[name], notes, warns, exact_reset)
              for name, m in neurons}
    graph = _export(export_to_nir, net, shape, resets)
    from .nir import import_nir

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConversionWarning)
        imported = import_nir(graph, fmt=fmt, input_kind=input_kind, headroom=headroom)
    warns += [str(w.message) for w in caught if issubclass(w.category, ConversionWarning)]
    for w in caught:  # any other warning, as it came
        if not issubclass(w.category, ConversionWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    notes += [f"import: {c}" for c in imported.meta["conventions"]]
    steppable = all(m.init_hidden for _, m in neurons)
    conv = Converted(net=imported.net, imported=imported, graph=graph, module=net,
                     input_shape=shape, steppable=steppable, notes=notes, warnings=warns)
    if not steppable:
        notes.append("no check: the module keeps no state between calls (init_hidden=False); "
                     "compare() needs its output spikes as reference=")
    elif check_steps and check_samples:
        from .nir import random_input

        x = random_input(imported.net, check_steps, check_samples, seed=seed, rate=0.3)
        conv.check = conv.compare(x)
        agree = conv.check["spike_agreement"]["float"]
        if agree < CHECK_AGREEMENT:
            warns.append(f"the imported float model's output spikes equal the module's own "
                         f"forward pass on only {agree:.4f} of {check_steps} steps x "
                         f"{check_samples} random samples (expected >= {CHECK_AGREEMENT}): "
                         f"the module does something the conversion did not carry over")
    for message in warns:
        warnings.warn(message, ConversionWarning, stacklevel=2)
    return conv
