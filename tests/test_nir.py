"""NIR import / export (golden/nirgraph.py, golden/nir.py, docs/nir.md): the
snnTorch file, each discretisation convention, the error for every kind of bad
graph, the exact round trip of an export, and the CLI commands."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import random
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from netgen import random_input, random_network
from spikeforge.cli import main
from spikeforge.golden.integer import Format, LIFLayer, Network, Projection
from spikeforge.golden.modelfile import load_model, save_model
from spikeforge.golden.nir import export_nir, fidelity, import_nir, to_graph
from spikeforge.golden.nirgraph import DEFAULT_DT, META_RESET, NirError, from_graph, new_graph

DATA = Path(__file__).parent / "data"


def _load_maker():
    spec = importlib.util.spec_from_file_location("make_snntorch_nir",
                                                  DATA / "make_snntorch_nir.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _have_snntorch() -> bool:
    """snnTorch and nirtorch, with a nir whose nodes snnTorch's exporter writes."""
    return not LEGACY_NIR and \
        all(importlib.util.find_spec(m) is not None for m in ("snntorch", "nirtorch"))


def vec(*values) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def graph(nodes: dict, edges: list, **meta):
    return new_graph(nodes, edges, meta)


def inp(n: int):
    return nir.Input(input_type={"input": np.array([n])})


def out(n: int):
    return nir.Output(output_type={"output": np.array([n])})


LEGACY_NIR = "v_reset" not in inspect.signature(nir.LIF).parameters
"""nir <= 1.0.4 (what Sinabs pins): no ``v_reset``; its neurons subtract the threshold."""


def spiking(cls, v_reset, **params):
    """A spiking node resetting to ``v_reset``: as NIR writes it, or with nir <= 1.0.4
    (no ``v_reset``) a node marked for spikeforge's zero reset (to 0 only)."""
    if not LEGACY_NIR:
        return cls(**params, v_reset=np.asarray(v_reset, dtype=np.float64))
    if np.any(np.asarray(v_reset) != 0):
        pytest.skip("nir <= 1.0.4 has no v_reset")
    return cls(**params, metadata={META_RESET: "zero"})


def lif(n, tau=1e-3, thr=1.0, r=None, v_leak=0.0, v_reset=0.0):
    tau = np.full(n, tau)
    return spiking(nir.LIF, np.full(n, v_reset), tau=tau,
                   r=tau / DEFAULT_DT if r is None else np.full(n, r),
                   v_leak=np.full(n, v_leak), v_threshold=np.full(n, thr))


def chain(neuron, n_in: int, weight: np.ndarray, bias=None):
    """input -> Affine/Linear -> neuron -> output."""
    w = nir.Linear(weight=weight) if bias is None else nir.Affine(weight=weight, bias=bias)
    return graph({"input": inp(n_in), "w": w, "n": neuron, "output": out(weight.shape[0])},
                 [("input", "w"), ("w", "n"), ("n", "output")])


# ------------------------------------------------------------------ snnTorch
@pytest.mark.parametrize("origin", ["checked-in", "made-by-snntorch"])
def test_snntorch_export_imports_runs_and_reports_agreement(origin, tmp_path, capsys):
    if origin == "checked-in":
        nir_file, npz = DATA / "snntorch_leaky.nir", DATA / "snntorch_leaky.npz"
        if LEGACY_NIR:  # the file has v_reset (nir >= 1.0.5): the error says so
            with pytest.raises(NirError, match=r"install nir >= 1\.0\.5$"):
                import_nir(nir_file)
            return
    else:
        if not _have_snntorch():
            pytest.skip("snntorch / nirtorch not installed: the checked-in file covers it")
        nir_file, npz = _load_maker().make(tmp_path)
    model = tmp_path / "imported.safetensors"
    assert main(["import-nir", str(nir_file), "--out", str(model), "--inputs", str(npz),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # snnTorch's Sequential writes Affine -> LIF -> Affine -> LIF, nodes named by index.
    assert [(la["name"], la["nir_node"], la["size"], la["reset"]) for la in report["layers"]] \
        == [("1", "LIF", 10, "zero"), ("3", "LIF", 4, "zero")]
    net, meta = load_model(model)
    with np.load(npz) as data:
        x = torch.from_numpy(data["input"]).to(torch.int64)
        reference = torch.from_numpy(data["reference"]).to(torch.int64)
    # The discretisation is snnTorch's own: the float model reproduces its forward pass.
    assert report["fidelity"]["reference_agreement"]["float"] == 1.0
    # The integer model's agreement, recomputed here from the saved model.
    got = net.run(x).spikes[net.output]
    agreement = float((got == reference).double().mean())
    assert report["fidelity"]["reference_agreement"]["integer"] == agreement
    assert agreement >= 0.97
    assert int(reference.sum()) > 50 and int(got.sum()) > 50  # the output layer is active
    assert meta["nir"]["dt"] == DEFAULT_DT and meta["nir"]["file"] == str(nir_file)


def test_checked_in_snntorch_file_is_what_the_script_makes(tmp_path):
    if not _have_snntorch():
        pytest.skip("snntorch / nirtorch not installed")
    made, made_npz = _load_maker().make(tmp_path)
    a, b = import_nir(made).net, import_nir(DATA / "snntorch_leaky.nir").net
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert la.name == lb.name
        for what in ("alpha", "theta", "bias"):
            assert torch.equal(getattr(la, what), getattr(lb, what))
        for pa, pb in zip(la.inputs, lb.inputs, strict=True):
            assert torch.equal(pa.weight, pb.weight)
    with np.load(made_npz) as fresh, np.load(DATA / "snntorch_leaky.npz") as kept:
        assert np.array_equal(fresh["input"], kept["input"])
        assert np.array_equal(fresh["reference"], kept["reference"])


def test_snntorch_forward_equals_the_float_model_on_random_weights():
    """Per-neuron beta and threshold, zero reset: the float discretisation is exact."""
    if not _have_snntorch():
        pytest.skip("snntorch / nirtorch not installed")
    from snntorch.export_nir import export_to_nir

    maker = _load_maker()
    net = maker.build()
    with torch.no_grad():
        for module in net:
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(1.7)
    imported = import_nir(export_to_nir(net, torch.zeros(maker.INPUTS)))
    x = (torch.rand(16, 8, maker.INPUTS, generator=torch.Generator().manual_seed(5)) < 0.4)
    x = x.to(torch.int64)
    ref = maker.forward(net, x)
    flt = imported.float_net.run(x)["spikes"][imported.net.output]
    assert torch.equal(flt, ref.double())
    assert int(ref.sum()) > 20


# -------------------------------------------------------------- conventions
def test_beta_is_one_minus_dt_over_tau():
    n = lif(3)
    n.tau = vec(1e-3, 5e-4, 1e-4)
    n.r = n.tau / DEFAULT_DT
    imp = import_nir(chain(n, 2, np.ones((3, 2))))
    assert imp.float_net.layers[0].beta == pytest.approx([0.9, 0.8, 0.0])
    assert imp.net.layers[0].alpha.tolist() == [round(0.9 * 256), round(0.8 * 256), 0]
    # Another dt: beta = 1 - dt/tau again.
    imp = import_nir(chain(n, 2, np.ones((3, 2))), dt=5e-5)
    assert imp.float_net.layers[0].beta == pytest.approx([0.95, 0.9, 0.5])


def test_tau_shorter_than_dt_is_refused():
    n = lif(2, tau=5e-5)
    with pytest.raises(NirError) as err:
        import_nir(chain(n, 2, np.ones((2, 2))))
    assert str(err.value).startswith("node 'n': tau=5e-05 is shorter than dt=0.0001, so beta")


def test_input_gain_is_dt_r_over_tau_and_v_leak_is_a_bias():
    w = np.array([[1.0, -2.0], [0.5, 0.25]])
    b = vec(0.1, -0.2)
    n = lif(2, tau=1e-3, r=3.0 * 1e-3 / DEFAULT_DT, v_leak=0.4)
    layer = import_nir(chain(n, 2, w, b)).float_net.layers[0]
    gain = DEFAULT_DT * 3.0 * 1e-3 / DEFAULT_DT / 1e-3
    assert np.allclose(layer.inputs[0][0].weight.numpy(), gain * w, rtol=1e-12)
    assert np.allclose(layer.bias, gain * b + (DEFAULT_DT / 1e-3) * 0.4, rtol=1e-12)
    # snnTorch's r = tau/dt gives a gain of exactly the weights.
    layer = import_nir(chain(lif(2), 2, w)).float_net.layers[0]
    assert np.allclose(layer.inputs[0][0].weight.numpy(), w, rtol=1e-12)


def test_strict_threshold_maps_to_floor_plus_one():
    """v > s*thr in the float model <=> v >= floor(s*thr) + 1 for integer v."""
    for thr, w in [(1.0, 1.0), (0.5, 0.3), (2.0, 0.7), (0.013, 1.0), (0.0, 1.0)]:
        imp = import_nir(chain(lif(1, thr=thr), 1, np.array([[w]])))
        s, theta = imp.scales["n"], int(imp.net.layers[0].theta[0])
        assert theta == math.floor(s * thr) + 1
        for v in range(-3, 3 * theta + 3):
            assert (v >= theta) == (v > s * thr), (thr, v)


def test_membrane_equal_to_threshold_does_not_spike():
    """IF with gain 1 and threshold 1.0: one input spike brings v to exactly 1.0
    (no spike, strict), the second to 2.0 (spike), then v = v_reset = 0."""
    n = spiking(nir.IF, vec(0.0), r=vec(1 / DEFAULT_DT), v_threshold=vec(1.0))
    imp = import_nir(chain(n, 1, np.array([[1.0]])))
    x = torch.tensor([1, 1, 0, 1, 1], dtype=torch.int64)[:, None, None]
    flt = imp.float_net.run(x)
    assert flt["spikes"]["n"][:, 0, 0].tolist() == [0, 1, 0, 0, 1]
    assert flt["membranes"]["n"][:, 0, 0].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    trace = imp.net.run(x)
    assert trace.spikes["n"][:, 0, 0].tolist() == [0, 1, 0, 0, 1]
    layer = imp.net.layers[0]
    assert int(layer.alpha[0]) == 256 and layer.reset == "zero"
    assert int(layer.theta[0]) == int(layer.inputs[0].weight[0, 0]) + 1


def test_v_reset_is_scaled_and_must_be_one_value():
    imp = import_nir(chain(lif(2, thr=1.0, v_reset=0.25), 2, np.ones((2, 2))))
    assert imp.net.layers[0].v_reset == round(imp.scales["n"] * 0.25) != 0
    n = lif(2)
    n.v_reset = vec(0.0, 0.1)
    with pytest.raises(NirError) as err:
        import_nir(chain(n, 2, np.ones((2, 2))))
    assert str(err.value) == ("node 'n': v_reset differs between neurons; the integer model "
                              "has one v_reset per layer")


def test_if_li_and_integrator_nodes():
    imp = import_nir(chain(nir.LI(tau=vec(2e-4, 4e-4), r=vec(2.0, 4.0), v_leak=vec(0, 0)),
                           2, np.ones((2, 2))))
    layer = imp.net.layers[0]
    assert not layer.spiking and layer.reset == "none"
    assert layer.alpha.tolist() == [128, 192]
    imp = import_nir(chain(nir.I(r=vec(5000.0)), 1, np.array([[2.0]])))
    assert imp.float_net.layers[0].inputs[0][0].weight.tolist() == [[2.0 * DEFAULT_DT * 5000.0]]
    assert int(imp.net.layers[0].alpha[0]) == 256 and not imp.net.layers[0].spiking
    x = torch.ones(4, 1, 1, dtype=torch.int64)
    fid = fidelity(imp, x)
    assert fid["layers"]["n"]["membrane_rmse"] == 0.0  # exact: integer steps of 127


def _cuba(tau_syn, v_leak=0.0):
    return spiking(nir.CubaLIF, vec(0.0), tau_syn=vec(tau_syn), tau_mem=vec(1e-3), r=vec(10.0),
                   v_leak=vec(v_leak), v_threshold=vec(1.0), w_in=vec(2.0))


def test_cubalif_with_tau_syn_equal_dt_is_a_plain_lif():
    # The current follows its input in one step: gain dt r/tau_mem * dt w_in/tau_syn = 1*2.
    imp = import_nir(chain(_cuba(DEFAULT_DT), 1, np.array([[0.5]])))
    assert imp.float_net.layers[0].inputs[0][0].weight.tolist() == [[pytest.approx(1.0)]]
    assert imp.net.layers[0].spiking and not imp.net.layers[0].current_based


def test_cubalif_has_a_decaying_current():
    """tau_syn = 5 dt: alpha_syn = 1 - 1/5 = 0.8 (205/256); the input gain is
    dt r / tau_mem * dt w_in / tau_syn = 1 * 0.4; the float and integer models agree."""
    imp = import_nir(chain(_cuba(5e-4), 1, np.array([[0.5]])))
    flt, layer = imp.float_net.layers[0], imp.net.layers[0]
    assert flt.alpha_syn.tolist() == [pytest.approx(0.8)]
    assert flt.inputs[0][0].weight.tolist() == [[pytest.approx(0.2)]]
    assert layer.current_based and layer.alpha_syn.tolist() == [205]
    x = torch.ones(12, 1, 1, dtype=torch.int64)
    assert imp.net.run(x).spikes["n"][:, 0, 0].tolist() == \
        imp.float_net.run(x)["spikes"]["n"][:, 0, 0].tolist()
    assert 0 < int(imp.net.run(x).spikes["n"].sum()) < 12


def test_cubalif_refusals_name_the_reason():
    assert _error(chain(_cuba(5e-4, v_leak=0.1), 1, np.array([[0.5]]))) == (
        "node 'n': CubaLIF with v_leak != 0: the leak would enter the membrane beside the "
        "current, which the integer current-based LIF does not have")
    # 1 - dt/tau_syn = 0.001 is 0.256 / 256: it rounds to 0 at frac_bits = 8.
    assert _error(chain(_cuba(DEFAULT_DT / 0.999), 1, np.array([[0.5]]))) == (
        "node 'n': the synaptic current's decay 1 - dt/tau_syn = 0.001 rounds to 0 at "
        "frac_bits=8 (the current would not integrate); use more frac_bits or a smaller dt")


def test_recurrent_edge_reads_the_previous_step_and_flatten_passes_through():
    nodes = {"input": nir.Input(input_type={"input": np.array([2, 2])}),
             "flat": nir.Flatten(input_type={"input": np.array([2, 2])}, start_dim=0),
             "w": nir.Linear(weight=np.eye(4)[:2]),
             "n": spiking(nir.IF, vec(0.0, 0.0), r=vec(1e4, 1e4), v_threshold=vec(0.5, 0.5)),
             "rec": nir.Linear(weight=np.array([[0.0, 1.0], [1.0, 0.0]])),
             "output": out(2)}
    edges = [("input", "flat"), ("flat", "w"), ("w", "n"), ("n", "rec"), ("rec", "n"),
             ("n", "output")]
    imp = import_nir(graph(nodes, edges))
    layer = imp.net.layers[0]
    assert imp.net.input_size == 4
    assert [(p.source, p.recurrent) for p in layer.inputs] == [("input", False), ("n", True)]
    # One input spike to neuron 0 at t=0: neuron 0 fires at t=0, neuron 1 at t=1 (through
    # the recurrent edge, one step late), neuron 0 at t=2, ...
    x = torch.zeros(4, 1, 4, dtype=torch.int64)
    x[0, 0, 0] = 1
    want = [[1, 0], [0, 1], [1, 0], [0, 1]]
    assert imp.float_net.run(x)["spikes"]["n"][:, 0].tolist() == want
    assert imp.net.run(x).spikes["n"][:, 0].tolist() == want


def test_nested_graph_as_snntorch_writes_rleaky():
    inner = graph({"input": inp(2), "lif": lif(2), "w_rec": nir.Linear(weight=np.eye(2)),
                   "output": out(2)},
                  [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])
    g = graph({"input": inp(3), "fc": nir.Linear(weight=np.ones((2, 3))), "rl": inner,
               "output": out(2)}, [("input", "fc"), ("fc", "rl"), ("rl", "output")])
    imp = import_nir(g)
    assert [la.name for la in imp.net.layers] == ["rl.lif"]
    assert [(p.source, p.recurrent) for p in imp.net.layers[0].inputs] == \
        [("input", False), ("rl.lif", True)]


# ------------------------------------------------------------------- errors
def _error(g, **kw) -> str:
    with pytest.raises(NirError) as err:
        import_nir(g, **kw)
    return str(err.value)


def test_unsupported_node_is_named():
    g = graph({"input": inp(2), "d": nir.Delay(delay=vec(1.0, 1.0)), "output": out(2)},
              [("input", "d"), ("d", "output")])
    assert _error(g) == (
        "node 'd': Delay is not supported; spikeforge maps Input, Output, Affine, Linear, "
        "Conv1d, Conv2d, SumPool2d, AvgPool2d, LIF, IF, LI, I (Integrator), CubaLIF, CubaLI, "
        "Flatten, Identity, nested graphs")


def test_dangling_edge_is_named():
    g = chain(lif(2), 2, np.ones((2, 2)))
    g.edges.append(("n", "ghost"))
    assert _error(g) == "edge ('n', 'ghost'): node 'ghost' does not exist"


def test_shape_mismatches_are_named():
    g = chain(lif(2), 3, np.ones((2, 4)))
    assert _error(g) == "node 'w': weight has 4 inputs but its input has 3 values"
    g = chain(lif(3), 2, np.ones((2, 2)))
    assert _error(g) == "node 'w': its output has 2 values but its target 'n' has 3 neurons"
    g = chain(lif(2), 2, np.ones((2, 2)), bias=vec(1.0, 2.0, 3.0))
    assert _error(g) == "node 'w': bias has shape (3,), expected (2,)"


def test_missing_and_bad_parameters_are_named():
    n = lif(2)
    n.v_threshold = None
    assert _error(chain(n, 2, np.ones((2, 2)))) == \
        "node 'n': parameter 'v_threshold' is missing"
    n = lif(2)
    n.v_leak = vec(0.0, np.nan)
    assert _error(chain(n, 2, np.ones((2, 2)))) == \
        "node 'n': parameter 'v_leak' has non-finite values"
    w = nir.Linear(weight=np.ones((2, 2)))
    w.weight = None
    g = graph({"input": inp(2), "w": w, "n": lif(2), "output": out(2)},
              [("input", "w"), ("w", "n"), ("n", "output")])
    assert _error(g) == "node 'w': parameter 'weight' is missing"


def test_graph_structure_errors_are_named():
    two_out = chain(lif(2), 2, np.ones((2, 2)))
    two_out.nodes["out2"] = out(2)
    two_out.edges.append(("n", "out2"))
    assert _error(two_out).startswith("the graph needs exactly one Output node")
    li_feeds = graph({"input": inp(2), "w": nir.Linear(weight=np.ones((2, 2))),
                      "li": nir.LI(tau=vec(1e-3, 1e-3), r=vec(10, 10), v_leak=vec(0, 0)),
                      "w2": nir.Linear(weight=np.ones((2, 2))), "n": lif(2), "output": out(2)},
                     [("input", "w"), ("w", "li"), ("li", "w2"), ("w2", "n"), ("n", "output")])
    assert _error(li_feeds) == ("node 'li': the non-spiking LI node feeds 'n'; the integer "
                                "model's leaky integrators are outputs only")
    island = chain(lif(2), 2, np.ones((2, 2)))
    island.nodes.update(w9=nir.Linear(weight=np.ones((2, 2))), n9=lif(2))
    island.edges += [("n9", "w9"), ("w9", "n9")]
    assert _error(island) == "node 'n9' is not reachable from the Input node"
    to_weight = graph({"input": inp(2), "w": nir.Linear(weight=np.ones((2, 2))),
                       "output": out(2)}, [("input", "w"), ("w", "output")])
    assert _error(to_weight) == ("node 'output': the Output node's input 'w' is a Linear; the "
                                 "integer model's output is a neuron layer")
    no_in = chain(lif(2), 2, np.ones((2, 2)))
    no_in.edges.append(("w", "w"))
    assert _error(no_in) == "node 'w': a Linear node needs exactly one input, not 2 " \
        "(['input', 'w'])"


def test_integer_limits_are_named():
    assert _error(chain(lif(2, thr=-1.0), 2, np.ones((2, 2)))).startswith(
        "node 'n': v_threshold in [-1, -1] maps to theta in [")
    # 16-bit weights on 300 inputs need 25 accumulator bits, beyond acc_bits=24.
    g = chain(lif(2, thr=0.01), 300, np.ones((2, 300)))
    assert _error(g, fmt=Format(w_bits=16)) == (
        "the imported network breaks the integer model's limits: layer 'n': the worst-case "
        "synaptic sum needs 25 accumulator bits, more than acc_bits=24")
    g = chain(lif(2, v_leak=1e6), 2, np.ones((2, 2)))
    assert _error(g).startswith("node 'n': the bias (with the v_leak term) reaches")


def test_unreadable_file_is_refused(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not an hdf5 file" * 20)
    with pytest.raises(NirError) as err:
        import_nir(bad)
    assert str(err.value).startswith(f"{bad}: not a readable NIR file (")
    with pytest.raises(NirError) as err:
        import_nir(tmp_path / "missing.nir")
    assert str(err.value) == f"{tmp_path / 'missing.nir'}: no such NIR file"


def test_cli_import_errors_exit_3_naming_the_node(tmp_path, capsys):
    g = chain(lif(2), 3, np.ones((2, 4)))
    path = tmp_path / "bad.nir"
    nir.write(str(path), g)
    assert main(["import-nir", str(path), "--out", str(tmp_path / "m.safetensors")]) == 3
    out_text, err = capsys.readouterr()
    assert out_text == ""
    assert err == "spikeforge: error: node 'w': weight has 4 inputs but its input has 3 values\n"
    assert not (tmp_path / "m.safetensors").exists()


# ------------------------------------------------------------------- export
def _behaviour(net: Network, x: torch.Tensor) -> dict:
    trace = net.run(x)
    return {**{f"s.{k}": v for k, v in trace.spikes.items()},
            **{f"u.{k}": v for k, v in trace.membranes.items()}, "out": trace.outputs[net.output]}


@pytest.mark.parametrize("seed", range(30))
def test_export_then_import_is_exact(seed, tmp_path):
    rng = random.Random(seed)
    net = random_network(rng, max_ssm=0)
    path = tmp_path / "net.nir"
    notes = export_nir(net, path)
    back = import_nir(path).net
    assert back.fmt == net.fmt and back.input_kind == net.input_kind
    assert back.output == net.output
    assert sorted(la.name for la in back.layers) == sorted(la.name for la in net.layers)
    for layer in net.layers:
        got = back.layer(layer.name)
        assert got.spiking == layer.spiking and got.reset == layer.reset
        assert torch.equal(got.alpha, layer.alpha) and torch.equal(got.bias, layer.bias)
        if layer.spiking:
            assert torch.equal(got.theta, layer.theta)
        if layer.reset == "zero":
            assert got.v_reset == layer.v_reset
        want = sorted((p.source, p.recurrent, p.weight.tolist()) for p in layer.inputs)
        assert sorted((p.source, p.recurrent, p.weight.tolist()) for p in got.inputs) == want
    x = random_input(rng, net, steps=12, batch=4)
    a, b = _behaviour(net, x), _behaviour(back, x)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    plain = "subtract" if LEGACY_NIR else "zero"  # the reset this nir's nodes express
    changed = [la.name for la in net.layers if la.spiking and la.reset != plain]
    assert [n.split("'")[1] for n in notes] == changed


def test_export_refuses_ssm_layers():
    rng = random.Random(3)
    for _ in range(50):
        net = random_network(rng, max_ssm=2)
        ssm = [la.name for la in net.layers if la.kind == "ssm"]
        if ssm:
            break
    with pytest.raises(NirError) as err:
        to_graph(net)
    assert str(err.value) == f"layer {ssm[0]!r}: ssm layers have no NIR node"


def test_exported_graph_reads_as_plain_nir(tmp_path):
    """Other tools see standard nodes: IF/LIF/LI/I, Affine/Linear, dt-consistent tau and r."""
    w = torch.tensor([[3, -2], [1, 0]], dtype=torch.int64)
    net = Network(input_size=2, input_kind="spike", output="h", layers=[
        LIFLayer(name="h", size=2, alpha=torch.tensor([230, 0]), theta=torch.tensor([5, 9]),
                 bias=torch.tensor([1, -1]), inputs=[Projection("input", w)], reset="zero",
                 v_reset=-2)])
    g, notes = to_graph(net)
    assert len(notes) == LEGACY_NIR  # nir <= 1.0.4 has no reset to v_reset
    node = g.nodes["h"]
    assert isinstance(node, nir.LIF)
    assert np.allclose(1 - DEFAULT_DT / node.tau, [230 / 256, 0.0])
    assert np.allclose(DEFAULT_DT * node.r / node.tau, 1.0)
    assert node.v_threshold.tolist() == [4.5, 8.5]
    assert LEGACY_NIR or node.v_reset.tolist() == [-2.0, -2.0]
    assert isinstance(g.nodes["h_w0"], nir.Affine) and g.nodes["h_w0"].bias.tolist() == [1, -1]
    # The float reading of the exported graph follows the integer model closely.
    imp = import_nir(g)
    x = (torch.rand(40, 8, 2, generator=torch.Generator().manual_seed(0)) < 0.5).long()
    # (Not equal: NIR's leak has no floor; the threshold sits half-way, at theta - 0.5.)
    assert fidelity(imp, x)["spike_agreement"] >= 0.85


def test_cli_export_and_reimport(tmp_path, capsys):
    rng = random.Random(7)
    net = random_network(rng, max_ssm=0)
    model = tmp_path / "m.safetensors"
    save_model(model, net, {"note": "random"})
    nir_file = tmp_path / "m.nir"
    assert main(["export-nir", str(model), str(nir_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["file"] == str(nir_file) and result["layers"] == [la.name for la in net.layers]
    again = tmp_path / "again.safetensors"
    assert main(["import-nir", str(nir_file), "--out", str(again), "--json", "-T", "6",
                 "--samples", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == "random" and report["fidelity"]["steps"] == 6
    back, _ = load_model(again)
    x = random_input(rng, net, steps=6, batch=3)
    assert torch.equal(net.run(x).outputs[net.output], back.run(x).outputs[back.output])


def test_from_graph_rejects_bad_dt():
    with pytest.raises(NirError) as err:
        from_graph(chain(lif(1), 1, np.ones((1, 1))), dt=0.0)
    assert str(err.value) == "dt must be a positive number, not 0.0"


def test_scalar_parameters_broadcast_and_identity_and_direct_edges():
    """0-d parameters take the population size from the weights; Identity passes
    through; a neuron node may read another neuron node directly (identity weights)."""
    scalar = spiking(nir.LIF, np.array(0.0), tau=np.array(1e-3), r=np.array(10.0),
                     v_leak=np.array(0.0), v_threshold=np.array(1.0))
    identity = pytest.importorskip("nir.ir.graph").__dict__.get("Identity")
    if identity is None:
        pytest.skip("this nir has no Identity node")
    nodes = {"input": inp(3), "id": identity(input_type={"input": np.array([3])}),
             "w": nir.Linear(weight=np.ones((2, 3))), "a": scalar, "b": lif(2, thr=0.5),
             "output": out(2)}
    edges = [("input", "id"), ("id", "w"), ("w", "a"), ("a", "b"), ("b", "output")]
    imp = import_nir(graph(nodes, edges))
    a, b = imp.net.layers
    assert (a.name, a.size, b.name, b.size) == ("a", 2, "b", 2)
    assert a.alpha.tolist() == [230, 230]
    assert [p.source for p in b.inputs] == ["a"]
    assert imp.float_net.layer("b").inputs[0][0].weight.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_export_names_never_clash_with_layer_names(tmp_path):
    w = torch.ones(2, 2, dtype=torch.int64)

    def layer(name, source):
        return LIFLayer(name=name, size=2, alpha=torch.tensor([200, 200]),
                        theta=torch.tensor([2, 2]), bias=torch.tensor([0, 0]),
                        inputs=[Projection(source, w)], reset="zero")

    net = Network(input_size=2, input_kind="spike", output="output", layers=[
        layer("a_w0", "input"), layer("a", "a_w0"), layer("output", "a")])
    g, _ = to_graph(net)
    assert {"a_w0", "a", "output", "a_w0_", "output_", "input"} <= set(g.nodes)
    path = tmp_path / "clash.nir"
    export_nir(net, path)
    back = import_nir(path).net
    x = (torch.rand(10, 3, 2, generator=torch.Generator().manual_seed(1)) < 0.6).long()
    assert torch.equal(back.run(x).outputs["output"], net.run(x).outputs["output"])


def test_cli_rejects_a_bad_dt(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["import-nir", "x.nir", "--out", str(tmp_path / "m"), "--dt", "-1"])
    assert exc.value.code == 2
    assert "argument --dt: '-1' must be a positive number" in capsys.readouterr().err


def test_an_export_requantizes_for_another_format(tmp_path):
    rng = random.Random(4)
    net = random_network(rng, max_ssm=0, max_lif=2)
    path = tmp_path / "n.nir"
    export_nir(net, path)
    imp = import_nir(path, fmt=Format(w_bits=4))
    assert imp.net.fmt == Format(w_bits=4)
    for layer in imp.net.layers:
        assert max(int(p.weight.abs().max()) for p in layer.inputs) in (7, 8)
        assert np.all(np.asarray(imp.scales[layer.name]) != 1.0)
