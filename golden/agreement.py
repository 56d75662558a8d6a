"""Agreement with the framework that made a NIR graph: the same file run by the
framework's own NIR import and by the imported integer model, on the same inputs.

Frameworks (each imported only when asked for; install them beside spikeforge):

* ``sinabs``: ``sinabs.from_nir(graph, batch_size=B)`` run on ``[B*T, *input
  shape]`` (its ``Squeeze`` layers fold time into the batch); the import uses
  Sinabs' firing rule (``framework="sinabs"``).
* ``snntorch``: the modules ``snntorch.import_nir`` builds node by node
  (``_nir_to_snntorch_module``, after its own ``_replace_rnn_subgraph_with_nirgraph``),
  chained in the graph's order and stepped with explicit states.  The import
  uses snnTorch's conventions: NIR's firing rule, reset to zero (what its
  importer builds).  snnTorch 1.0 cannot run a recurrent graph this way (its
  ``RSynaptic`` / ``RLeaky`` with ``reset_delay=False`` never apply their reset,
  and ``import_from_nir`` fails on recurrent subgraphs under nirtorch 2.x): that
  raises an error that says so.
* ``norse``: ``norse.torch.from_nir(graph, dt=dt)`` stepped with its state (its
  CubaLIF integrates the new current, as spikeforge's does); the import uses
  NIR's firing rule and a reset to zero (Norse's ``reset_value``).

Inputs (:func:`synthetic_inputs`): deterministic synthetic event streams at a
realistic density.  A ``(2, 34, 34)`` input (N-MNIST): about 4,000 events per
300 steps from a random stroke figure of 12 points, moved in three saccades
(as the N-MNIST camera moved), Gaussian jitter of 1.5 pixels, random polarity;
counts per bin (an ``int`` input when a bin holds more than one).  Any other
input (Braille's 12 channels over 256 steps): each channel taps in bursts,
Bernoulli events at 0.3 inside a burst of 8 steps that starts with probability
0.05.

Report (:func:`agreement`): per model (``integer``, ``float``), the fraction of
``(sample, step, output neuron)`` whose spike counts equal the framework's
(``step_agreement``), of samples whose per-neuron spike totals all equal
(``count_agreement``), and of samples whose class (argmax of the total spikes,
ties to the lowest index) equals the framework's (``class_agreement``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["FRAMEWORKS", "synthetic_inputs", "run_framework", "run_framework_chunked",
           "agreement", "import_options"]

FRAMEWORKS = ("sinabs", "snntorch", "norse")


def import_options(framework: str) -> dict:
    """The :func:`.nir.import_nir` options that follow the framework's own import."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, not {framework!r}")
    return {"framework": "sinabs"} if framework == "sinabs" else {"framework": "nir",
                                                                  "reset": "zero"}


def _run_norse(graph, x: torch.Tensor, dt: float) -> torch.Tensor:
    import norse.torch

    model = norse.torch.from_nir(graph, dt=dt)
    samples, steps = x.shape[:2]
    state, outputs = None, []
    with torch.no_grad():
        for t in range(steps):
            out = model(x[:, t].float().reshape(samples, -1), state)
            out, state = out if isinstance(out, tuple) else (out, None)
            outputs.append(out)
    return torch.stack(outputs, dim=1)


def _nmnist(rng: np.random.Generator, steps: int) -> np.ndarray:
    frames = np.zeros((steps, 2, 34, 34), np.int64)
    points = rng.integers(8, 26, size=(12, 2))
    for _ in range(4000 * steps // 300):
        t = int(rng.integers(0, steps))
        saccade = t * 3 // steps
        p = points[rng.integers(0, len(points))] + rng.normal(0, 1.5, 2) \
            + np.array([(saccade - 1) * 3, (saccade % 2) * 2])
        y, x = np.clip(np.round(p).astype(int), 0, 33)
        frames[t, rng.integers(0, 2), y, x] += 1
    return frames


def _taps(rng: np.random.Generator, steps: int, shape: tuple[int, ...]) -> np.ndarray:
    size = math.prod(shape)
    on = np.zeros((steps, size), bool)
    for channel in range(size):
        for t in np.nonzero(rng.random(steps) < 0.05)[0]:
            on[t:t + 8, channel] = True
    return ((rng.random((steps, size)) < 0.3) & on).astype(np.int64).reshape(steps, *shape)


def synthetic_inputs(shape: tuple[int, ...], samples: int, steps: int,
                     seed: int = 0) -> torch.Tensor:
    """``[samples, steps, *shape]`` int64 event counts (module docstring)."""
    make = _nmnist if tuple(shape) == (2, 34, 34) else \
        (lambda rng, steps: _taps(rng, steps, tuple(shape)))
    return torch.from_numpy(np.stack([make(np.random.default_rng([seed, s]), steps)
                                      for s in range(samples)]))


def _run_sinabs(graph, x: torch.Tensor) -> torch.Tensor:
    import sinabs

    samples, steps = x.shape[:2]
    model = sinabs.from_nir(graph, batch_size=samples)
    with torch.no_grad():
        out = model(x.float().reshape(samples * steps, *x.shape[2:]))
    out = out[0] if isinstance(out, tuple) else out
    return out.reshape(samples, steps, -1)


def _run_snntorch(graph, x: torch.Tensor) -> torch.Tensor:
    import contextlib
    import io

    from snntorch import import_nir

    with contextlib.redirect_stdout(io.StringIO()):  # its importer prints warnings
        graph = import_nir._replace_rnn_subgraph_with_nirgraph(graph)
        modules = {k: import_nir._nir_to_snntorch_module(v, init_hidden=False)
                   for k, v in graph.nodes.items()}
    broken = [k for k, m in modules.items() if type(m).__name__ in ("RSynaptic", "RLeaky")]
    if broken:
        import snntorch

        raise RuntimeError(
            f"snnTorch {snntorch.__version__} cannot run this graph as its NIR import builds "
            f"it: node {broken[0]!r} becomes an {type(modules[broken[0]]).__name__} with "
            f"reset_delay=False, whose forward resets a local copy of the membrane (the reset "
            f"never happens) and fails without explicit states; import_from_nir itself fails "
            f"on recurrent subgraphs under nirtorch 2.x")
    order = _chain_order(graph)
    samples, steps = x.shape[:2]
    states = {k: None for k in order}
    outputs = []
    with torch.no_grad():
        for t in range(steps):
            value = x[:, t].float().reshape(samples, -1)
            for name in order:
                value, states[name] = _step(modules[name], value, states[name])
            outputs.append(value)
    return torch.stack(outputs, dim=1)


def _chain_order(graph) -> list[str]:
    """The nodes from the Input to the Output of a chain graph (what snnTorch's
    importer wires for a feed-forward graph with recurrent subgraphs)."""
    succ = dict(graph.edges)
    start = next(k for k, v in graph.nodes.items() if type(v).__name__ == "Input")
    order, node = [], succ[start]
    while type(graph.nodes[node]).__name__ != "Output":
        order.append(node)
        node = succ[node]
    return order


def _step(module, value, state):
    """One step of an snnTorch module with explicit state; ``(output, state)``."""
    kind = type(module).__name__
    if kind == "Synaptic":
        syn, mem = state or (None, None)
        spk, syn, mem = module(value, syn, mem)
        return spk, (syn, mem)
    if kind == "Leaky":
        spk, mem = module(value, *(state or ()))
        return spk, (mem,)
    return module(value), None


def run_framework(framework: str, path, x: torch.Tensor, *, dt: float) -> torch.Tensor:
    """The framework's own run of the NIR file ``path`` on ``x`` (``[B, T, *input
    shape]``): its output spikes ``[B, T, outputs]`` (float).  ``dt``: the step
    (Norse's import takes it; the others fix their own)."""
    from .nirgraph import read_graph

    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, not {framework!r}")
    graph = read_graph(path)
    if framework == "norse":
        return _run_norse(graph, x, dt)
    return (_run_sinabs if framework == "sinabs" else _run_snntorch)(graph, x)


def _measures(got: torch.Tensor, want: torch.Tensor) -> dict:
    """Agreement of spike trains ``[B, T, N]`` (module docstring)."""
    totals_got, totals_want = got.sum(dim=1), want.sum(dim=1)
    return {"step_agreement": float((got == want).double().mean()),
            "count_agreement": float((totals_got == totals_want).all(dim=1).double().mean()),
            "class_agreement": float((totals_got.argmax(dim=1)
                                      == totals_want.argmax(dim=1)).double().mean()),
            "spikes": float(got.sum())}


def _outputs(imported, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer and the float model's output spikes ``[B, T, N]`` on ``x``."""
    from .data import model_inputs

    net = imported.net
    steps_first = model_inputs(net, x, clip=True)  # counts above 1 into a spike input: 1
    integer = net.run(steps_first, record=False).outputs[net.output].transpose(0, 1)
    flt = imported.float_net.run(steps_first)["spikes"][net.output].transpose(0, 1)
    return integer.to(torch.float64), flt.to(torch.float64)


def agreement(imported, reference: torch.Tensor, x: torch.Tensor, *, chunk: int = 8) -> dict:
    """How the imported integer model and its float model agree with ``reference``
    (the framework's output spikes ``[B, T, N]``) on ``x`` (``[B, T, *shape]``), run
    ``chunk`` samples at a time (the float model keeps every layer's trace)."""
    parts = [_outputs(imported, x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
    integer = torch.cat([p[0] for p in parts])
    flt = torch.cat([p[1] for p in parts])
    want = reference.to(torch.float64)
    return {"samples": int(x.shape[0]), "steps": int(x.shape[1]),
            "framework_spikes": float(want.sum()),
            "integer": _measures(integer, want), "float": _measures(flt, want)}


def run_framework_chunked(framework: str, path, x: torch.Tensor, *, dt: float,
                          chunk: int = 8, progress=None) -> torch.Tensor:
    """:func:`run_framework` ``chunk`` samples at a time (Sinabs folds time into the
    batch); ``progress(done)`` after each chunk."""
    parts = []
    for i in range(0, x.shape[0], chunk):
        parts.append(run_framework(framework, path, x[i:i + chunk], dt=dt))
        if progress is not None:
            progress(min(i + chunk, x.shape[0]))
    return torch.cat(parts)
