"""Make the snnTorch NIR fixture: ``snntorch_leaky.nir`` and ``snntorch_leaky.npz``.

An snnTorch network (Linear -> Leaky -> Linear -> Leaky, reset to zero, per-neuron
beta and threshold) written by snnTorch's own NIR export (``export_to_nir``, which
needs ``nirtorch``), and in the ``.npz``: random spike inputs ``input`` [T, B, 12]
and ``reference``, snnTorch's forward pass on them (the output layer's spikes).

    python tests/data/make_snntorch_nir.py [OUT_DIR]

The tests run :func:`make` when snnTorch is installed and use the checked-in
files otherwise.  Made with snntorch 1.0.0, nirtorch 2.6, nir 1.0.8, torch 2.13.0.
NIR 1.0.8 needs vector parameters (a scalar beta fails its type inference), and
the sample input has no batch dimension.  snnTorch's export keeps only a zero
reset, so the network uses ``reset_mechanism="zero"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

STEPS, SAMPLES, INPUTS, HIDDEN, OUTPUTS = 24, 32, 12, 10, 4


def build() -> torch.nn.Module:
    import snntorch as snn

    gen = torch.Generator().manual_seed(1234)
    lin1, lin2 = torch.nn.Linear(INPUTS, HIDDEN), torch.nn.Linear(HIDDEN, OUTPUTS)
    with torch.no_grad():
        lin1.weight.copy_(torch.randn(HIDDEN, INPUTS, generator=gen) * 0.8)
        lin1.bias.copy_(torch.randn(HIDDEN, generator=gen) * 0.1)
        lin2.weight.copy_(torch.randn(OUTPUTS, HIDDEN, generator=gen) * 0.8)
        lin2.bias.copy_(torch.randn(OUTPUTS, generator=gen) * 0.1)
    beta1 = torch.linspace(0.6, 0.95, HIDDEN)
    beta2 = torch.linspace(0.7, 0.9, OUTPUTS)
    thr1 = torch.linspace(0.8, 1.2, HIDDEN)
    thr2 = torch.full((OUTPUTS,), 1.0)
    return torch.nn.Sequential(
        lin1, snn.Leaky(beta=beta1, threshold=thr1, reset_mechanism="zero", init_hidden=True),
        lin2, snn.Leaky(beta=beta2, threshold=thr2, reset_mechanism="zero", init_hidden=True,
                        output=True))


def forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's forward pass over the steps of ``x`` [T, B, N]: output spikes."""
    for module in net:
        if hasattr(module, "reset_mem"):
            module.reset_mem()
    out = []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk, _mem = net(x[t].float())
            out.append(spk)
    return torch.stack(out)


def make(out_dir) -> tuple[Path, Path]:
    import nir
    from snntorch.export_nir import export_to_nir

    out_dir = Path(out_dir)
    net = build()
    graph = export_to_nir(net, torch.zeros(INPUTS))
    nir_path = out_dir / "snntorch_leaky.nir"
    nir.write(str(nir_path), graph)
    gen = torch.Generator().manual_seed(99)
    x = (torch.rand(STEPS, SAMPLES, INPUTS, generator=gen) < 0.3).to(torch.int64)
    ref = forward(net, x)
    npz_path = out_dir / "snntorch_leaky.npz"
    np.savez_compressed(npz_path, input=x.numpy().astype(np.int8),
                        reference=ref.numpy().astype(np.int8))
    return nir_path, npz_path


if __name__ == "__main__":
    print(*make(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent))
