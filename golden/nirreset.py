"""Reset conventions a NIR graph does not carry (for :mod:`.nirgraph`).

NIR (>= 1.0.5) states one reset, ``v = v_reset`` on a spike.  Two producers mean
something else:

* **snnTorch's reset by subtraction** (``reset_mechanism="subtract"``, its default,
  with ``reset_delay=True``, also its default) subtracts the threshold at the step
  *after* the spike, after the decay: ``v[t+1] = beta v[t] + I[t+1] - thr s[t]``.
  The integer ``subtract`` reset subtracts in the spiking step, before the decay:
  ``v[t+1] = beta (v[t] - thr s[t]) + I[t+1]``.  The difference, ``-(1 - beta) thr
  s[t]``, is exactly a recurrent edge from the layer to itself with the diagonal
  weights ``-(1 - beta) thr`` (:func:`next_step_correction`): reset ``subtract-next``
  is the integer ``subtract`` plus that edge.  snnTorch's export writes
  ``v_reset = 0`` whatever the reset was; ``spikeforge.from_snntorch`` marks each
  node with the module's own reset (node metadata ``spikeforge_reset``).
* NIR <= 1.0.4 wrote no ``v_reset`` and subtracted the threshold in the spiking
  step (:mod:`.nirgraph` handles it).

:func:`snntorch_zero_warning` names a graph that looks like snnTorch's export whose
spiking nodes import with a reset to zero only because the file says ``v_reset =
0``.  Warnings of this kind are :class:`ConversionWarning`; the CLI prints them as
``spikeforge: warning: ...`` on stderr.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch

from .projection import Projection

__all__ = ["ConversionWarning", "RESETS", "SUBTRACT_NEXT", "next_step_correction",
           "snntorch_zero_warning", "show_warning"]

SUBTRACT_NEXT = "subtract-next"
RESETS = ("zero", "subtract", SUBTRACT_NEXT)
"""The resets an import may impose on the spiking nodes the file does not mark."""


class ConversionWarning(UserWarning):
    """What a conversion could not carry over exactly, or had to assume."""


_SHOW = warnings.showwarning


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """For ``warnings.showwarning`` (the CLI): a :class:`ConversionWarning` as one line
    ``spikeforge: warning: ...`` on stderr; any other warning as Python shows it."""
    if not issubclass(category, ConversionWarning):
        _SHOW(message, category, filename, lineno, file, line)
        return
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))
    print(f"spikeforge: warning: {text}", file=sys.stderr if file is None else file)


def next_step_correction(name: str, beta: np.ndarray, threshold: np.ndarray) -> Projection | None:
    """The recurrent edge that turns the integer ``subtract`` reset into snnTorch's
    (module docstring): from layer ``name`` to itself, weights ``diag(-(1 - beta) thr)``
    (float, NIR units; quantized with the layer's other weights).  ``None`` when every
    ``beta`` is 1 (both resets are then the same)."""
    w = -(1.0 - np.asarray(beta, dtype=np.float64)) * np.asarray(threshold, dtype=np.float64)
    if not np.any(w):
        return None
    return Projection(name, torch.diag(torch.from_numpy(w)), recurrent=True)


def _snntorch_like(kind: str, node, dt: float) -> bool:
    """A neuron node as snnTorch's export writes it: ``LIF`` / ``CubaLIF`` with
    ``r = tau / dt`` (input gain 1), ``v_leak = 0`` and ``v_reset = 0``."""
    if kind not in ("LIF", "CubaLIF"):
        return False
    try:
        tau = np.asarray(node.tau_mem if kind == "CubaLIF" else node.tau, dtype=np.float64)
        r = np.asarray(node.r, dtype=np.float64)
        zeros = [np.asarray(getattr(node, a), dtype=np.float64) for a in ("v_leak", "v_reset")]
    except (AttributeError, TypeError, ValueError):
        return False
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = dt * r / tau
    return bool(np.allclose(gain, 1.0, rtol=1e-4, atol=0) and all(not np.any(z) for z in zeros))


def snntorch_zero_warning(nodes: dict, unmarked: list[str], dt: float) -> str | None:
    """The warning for spiking nodes ``unmarked`` (no reset given, none in their
    metadata, a ``v_reset`` in the file) that reset to 0 only because the file says so,
    in a graph every neuron node of which looks like snnTorch's export; else ``None``.
    ``nodes``: name -> (kind, node) of the flattened graph."""
    neurons = [(k, n) for k, n in nodes.values()
               if k in ("LIF", "IF", "LI", "I", "CubaLIF", "CubaLI")]
    if not unmarked or not neurons or not all(_snntorch_like(k, n, dt) for k, n in neurons):
        return None
    names = ", ".join(repr(n) for n in unmarked[:6]) + (", ..." if len(unmarked) > 6 else "")
    return (f"assumed a reset to zero in {len(unmarked)} spiking node(s) ({names}) because "
            f"the file says v_reset = 0; this graph looks like snnTorch's NIR export, which "
            f"writes v_reset = 0 whatever the module's reset_mechanism was. For a network "
            f"trained with snnTorch's default reset_mechanism='subtract', import with --reset "
            f"subtract-next (Python: reset='subtract-next'), or convert the module itself "
            f"with spikeforge.from_snntorch, which reads its reset; --reset zero keeps the "
            f"reset to zero without this warning")
