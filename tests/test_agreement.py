"""Agreement with the framework that made a NIR graph (golden/agreement.py): the
synthetic inputs, and the framework runners against the imported model (snnTorch
here; Sinabs where it is installed: it pins nir <= 1.0.4)."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re

import nir
import numpy as np
import pytest
import torch
from spikeforge.cli import main
from spikeforge.golden.agreement import (
    agreement,
    import_options,
    run_framework,
    synthetic_inputs,
)
from spikeforge.golden.integer import Format
from spikeforge.golden.nir import import_nir
from spikeforge.golden.nirgraph import new_graph

DT = 1e-4
MODERN_NIR = "v_reset" in inspect.signature(nir.LIF).parameters


def test_synthetic_nmnist_events_have_the_datasets_density():
    x = synthetic_inputs((2, 34, 34), 3, 300, seed=1)
    assert x.shape == (3, 300, 2, 34, 34) and x.dtype == torch.int64
    assert x.sum(dim=(1, 2, 3, 4)).tolist() == [4000, 4000, 4000]
    assert torch.equal(x, synthetic_inputs((2, 34, 34), 3, 300, seed=1))
    assert not torch.equal(x, synthetic_inputs((2, 34, 34), 3, 300, seed=2))


def test_synthetic_taps_are_bursts_of_events():
    x = synthetic_inputs((12,), 4, 256, seed=0)
    assert x.shape == (4, 256, 12) and int(x.max()) == 1
    rate = float(x.double().mean())
    assert 0.02 < rate < 0.2, rate  # bursts of 8 steps at 0.3, starting at 0.05 per step


def test_import_options_follow_the_framework():
    assert import_options("sinabs") == {"framework": "sinabs"}
    assert import_options("snntorch") == {"framework": "nir", "reset": "zero"}
    assert import_options("norse") == {"framework": "nir", "reset": "zero"}
    with pytest.raises(ValueError, match=re.escape(
            "framework must be one of ('sinabs', 'snntorch', 'norse'), not 'lava'") + "$"):
        import_options("lava")


def _cuba_graph(seed: int):
    """Affine 12 -> 6 into a CubaLIF written as snnTorch writes a Synaptic (alpha 0.8,
    beta 0.9, gain 1)."""
    rng = np.random.default_rng(seed)
    n = 6
    tau_syn, tau_mem = DT / 0.2, DT / 0.1
    cuba = nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem),
                       r=np.full(n, tau_mem / DT), v_leak=np.zeros(n),
                       v_threshold=np.full(n, 1.0), w_in=np.full(n, tau_syn / DT),
                       **({"v_reset": np.zeros(n)} if MODERN_NIR else {}))
    nodes = {"input": nir.Input(input_type={"input": np.array([12])}),
             "fc": nir.Affine(weight=rng.normal(0, 0.6, (n, 12)), bias=np.zeros(n)),
             "lif": cuba, "output": nir.Output(output_type={"output": np.array([n])})}
    return new_graph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], {})


@pytest.mark.skipif(importlib.util.find_spec("snntorch") is None or not MODERN_NIR,
                    reason="snnTorch (with a nir that has v_reset) is not installed")
def test_snntorch_runs_the_file_as_the_float_model_does(tmp_path):
    path = tmp_path / "cuba.nir"
    nir.write(str(path), _cuba_graph(3))
    x = synthetic_inputs((12,), 8, 64, seed=3)
    reference = run_framework("snntorch", path, x, dt=DT)
    assert reference.shape == (8, 64, 6) and reference.sum() > 0
    imported = import_nir(path, fmt=Format(w_bits=16, u_bits=24, acc_bits=32),
                          **import_options("snntorch"))
    report = agreement(imported, reference, x)
    assert report["float"]["step_agreement"] == 1.0
    assert report["integer"]["step_agreement"] >= 0.99
    assert report["integer"]["class_agreement"] >= 0.875


@pytest.mark.skipif(importlib.util.find_spec("snntorch") is None,
                    reason="snnTorch is not installed")
def test_snntorch_cannot_run_a_recurrent_graph_and_says_why(tmp_path):
    """Named as snnTorch writes an RSynaptic (``lif1.lif`` <-> ``lif1.w_rec``)."""
    path = tmp_path / "rec.nir"
    ff = _cuba_graph(0)
    nodes = {"input": ff.nodes["input"], "fc": ff.nodes["fc"], "lif1.lif": ff.nodes["lif"],
             "lif1.w_rec": nir.Affine(weight=np.eye(6) * 0.1, bias=np.zeros(6)),
             "output": ff.nodes["output"]}
    edges = [("input", "fc"), ("fc", "lif1.lif"), ("lif1.lif", "lif1.w_rec"),
             ("lif1.w_rec", "lif1.lif"), ("lif1.lif", "output")]
    nir.write(str(path), new_graph(nodes, edges, {}))
    with pytest.raises(RuntimeError, match="the reset never happens"):
        run_framework("snntorch", path, synthetic_inputs((12,), 1, 4), dt=DT)


@pytest.mark.skipif(importlib.util.find_spec("sinabs") is None,
                    reason="Sinabs is not installed (it pins nir <= 1.0.4)")
def test_sinabs_runs_the_cnn_as_the_float_model_does():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "shared" / "nir" / "scnn_mnist.nir"
    if not path.is_file():
        pytest.skip("../shared/nir is not here")
    x = synthetic_inputs((2, 34, 34), 4, 100, seed=0)
    reference = run_framework("sinabs", path, x, dt=1.0)
    imported = import_nir(path, input_kind="int", **import_options("sinabs"))
    report = agreement(imported, reference, x)
    assert report["float"]["class_agreement"] == 1.0
    assert report["float"]["step_agreement"] >= 0.999


@pytest.mark.skipif(importlib.util.find_spec("norse") is None, reason="Norse is not installed")
def test_norse_runs_the_file_as_the_float_model_does(tmp_path):
    path = tmp_path / "cuba.nir"
    nir.write(str(path), _cuba_graph(5))
    x = synthetic_inputs((12,), 8, 64, seed=5)
    reference = run_framework("norse", path, x, dt=DT)
    imported = import_nir(path, **import_options("norse"))
    assert agreement(imported, reference, x)["float"]["step_agreement"] == 1.0


@pytest.mark.skipif(importlib.util.find_spec("snntorch") is None or not MODERN_NIR,
                    reason="snnTorch (with a nir that has v_reset) is not installed")
def test_cli_check_against_reports_the_agreement(tmp_path, capsys):
    path = tmp_path / "cuba.nir"
    nir.write(str(path), _cuba_graph(2))
    model = tmp_path / "m.safetensors"
    assert main(["import-nir", str(path), "--out", str(model), "--check-against", "snntorch",
                 "--check-samples", "4", "--check-steps", "32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    a = report["agreement"]
    assert (a["framework"], a["samples"], a["steps"]) == ("snntorch", 4, 32)
    assert a["float"]["step_agreement"] == 1.0 and model.is_file()
    assert "reset 'zero' (given)" in report["conventions"]


@pytest.mark.skipif(importlib.util.find_spec("norse") is not None, reason="Norse is installed")
def test_cli_check_against_a_missing_framework_writes_nothing(tmp_path, capsys):
    path = tmp_path / "cuba.nir"
    nir.write(str(path), _cuba_graph(2))
    model = tmp_path / "m.safetensors"
    assert main(["import-nir", str(path), "--out", str(model), "--check-against", "norse",
                 "--check-samples", "2", "--check-steps", "8"]) == 2
    assert "--check-against norse: it is not installed" in capsys.readouterr().err
    assert not model.exists()
