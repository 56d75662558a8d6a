"""NIR import / export of feature maps, currents and Sinabs' rule (golden/nirchain.py,
nirexport.py, nirfile.py): exact round trips of random feature networks, the NIR
paper's graphs, the conventions a file implies, hostile files, and the refusals of
bad convolution and pool nodes.  The NIR basics are tests/test_nir.py."""

from __future__ import annotations

import math
import os
import random
import re
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch
from featgen import random_feature_network
from netgen import random_input
from spikeforge.golden.nir import export_nir, import_nir, to_graph
from spikeforge.golden.nirgraph import DEFAULT_DT, NirError
from test_nir import LEGACY_NIR, _behaviour, _error, chain, graph, inp, lif, out, spiking, vec


# ------------------------------------------- feature maps and currents, round trip
def _feature_cases(count: int):
    """Random feature networks NIR can hold (no 1-D pool, biases a node can carry)."""
    found, seed = [], 0
    while len(found) < count:
        net = random_feature_network(random.Random(7000 + seed))
        seed += 1
        try:
            to_graph(net)
        except NirError as exc:
            assert any(why in str(exc) for why in (
                "NIR has no 1-D pool node", "one value per channel",
                "(Sinabs' IAF) have no NIR node", "CubaLI node, which this nir"))
            continue
        found.append(net)
    return found


def _edge(p) -> tuple:
    dims = 0 if p.in_shape is None else len(p.in_shape) - 1
    return (p.source, p.recurrent, p.weight.tolist(), p.in_shape,
            p.pool and p.pool.resolved(dims), p.conv and (*p.conv.resolved(dims), p.conv.groups))


@pytest.mark.parametrize("index", range(12))
def test_feature_networks_export_then_import_exactly(index, tmp_path):
    net = _feature_cases(12)[index]
    path = tmp_path / "f.nir"
    export_nir(net, path)
    back = import_nir(path).net
    assert back.fmt == net.fmt and back.output == net.output
    for layer in net.layers:
        got = back.layer(layer.name)
        assert torch.equal(got.alpha, layer.alpha) and torch.equal(got.bias, layer.bias)
        if layer.spiking:
            assert torch.equal(got.theta, layer.theta)
        # A current that does not integrate (alpha_syn 0) comes back as a plain LIF.
        if layer.alpha_syn is not None and layer.alpha_syn.any():
            assert torch.equal(got.alpha_syn, layer.alpha_syn)
        else:
            assert got.alpha_syn is None
        assert sorted(map(_edge, got.inputs)) == sorted(map(_edge, layer.inputs))
    x = random_input(random.Random(index), net, 6, 3)
    a, b = _behaviour(net, x), _behaviour(back, x)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_nir_papers_graphs_import():
    """The shared CNN (Sinabs) and Braille RNN (snnTorch): conventions detected, the
    CNN's kernels shared (not unrolled), Braille's currents kept."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "nir"
    if not shared.is_dir():
        pytest.skip("../shared/nir is not here")
    cnn = import_nir(shared / "scnn_mnist.nir")
    assert cnn.float_net.dt == 1.0 and "Sinabs" in cnn.meta["conventions"][0]
    assert all(la.multi_spike and la.reset == "subtract" for la in cnn.net.layers)
    assert cnn.net.counts()["synapses"] == 800 + 2304 + 1152 + 32768 + 2560
    assert [p.conv is not None for la in cnn.net.layers for p in la.inputs] == \
        [True, True, True, False, False]
    assert cnn.net.layers[3].inputs[0].pool.kernel == (2, 2)
    braille = import_nir(shared / "braille.nir")
    assert braille.float_net.dt == DEFAULT_DT
    assert all(la.current_based for la in braille.net.layers)


def test_a_file_without_v_reset_resets_by_subtraction(tmp_path):
    """NIR <= 1.0.4 wrote no v_reset: its neurons subtract the threshold (Sinabs' IAF
    too).  The import says so and --reset / reset= overrides it."""
    params = {"tau": vec(1e-3), "r": vec(10.0), "v_leak": vec(0.0), "v_threshold": vec(1.0)}
    node = nir.LIF(**params) if LEGACY_NIR else nir.LIF(**params, v_reset=vec(0.0))
    path = tmp_path / "old.nir"
    nir.write(str(path), chain(node, 1, np.array([[1.5]])))
    with h5py.File(path, "r+") as f:
        entry = f["node"]["nodes"]["n"]
        if "v_reset" in entry:
            del entry["v_reset"]
    imp = import_nir(path)
    assert imp.net.layers[0].reset == "subtract"
    assert imp.meta["conventions"][1].startswith("reset by subtraction in 1 spiking node(s) "
                                                 "that carry no v_reset")
    # One input of 1.5 > 1.0: a spike, and 1.5 - 1.0 = 0.5 is left.
    flt = imp.float_net.run(torch.ones(1, 1, 1))
    assert flt["membranes"]["n"][0, 0, 0].item() == pytest.approx(0.5)
    forced = import_nir(path, reset="zero")
    assert forced.net.layers[0].reset == "zero" and forced.meta["conventions"][1] == \
        "reset 'zero' (given)"


def test_a_sinabs_graph_fires_like_sinabs():
    """IF with r = 1 everywhere (Sinabs' export): dt = 1 and Sinabs' IAF rule:
    floor(v / thr) spikes when v >= thr, subtract, membrane floor -thr.  Weights 2.5
    and -3: v = 2.5 gives 2 spikes (0.5 left); 0.5 - 3 = -2.5 is raised to -1; then
    -1 + 2.5 = 1.5 gives 1 spike.  The float and the integer model agree."""
    params = {"r": vec(1.0), "v_threshold": vec(1.0)}
    n = nir.IF(**params) if LEGACY_NIR else nir.IF(**params, v_reset=vec(0.0))
    imp = import_nir(chain(n, 2, np.array([[2.5, -3.0]])))
    assert imp.float_net.dt == 1.0 and imp.meta["conventions"][1].startswith("Sinabs' IAF")
    layer = imp.net.layers[0]
    assert layer.multi_spike and layer.reset == "subtract"
    assert layer.v_min.tolist() == [-int(layer.theta[0])]  # the threshold's scale is exact
    x = torch.tensor([[1, 0], [0, 1], [1, 0]])[:, None, :]
    flt = imp.float_net.run(x)
    assert flt["spikes"]["n"][:, 0, 0].tolist() == [2, 0, 1]
    assert flt["membranes"]["n"][:, 0, 0].tolist() == [0.5, -1.0, 0.5]
    assert imp.net.run(x).spikes["n"][:, 0, 0].tolist() == [2, 0, 1]
    nir_rule = import_nir(chain(n, 2, np.array([[2.5, -3.0]])), framework="nir")
    assert not nir_rule.net.layers[0].multi_spike
    assert nir_rule.float_net.run(x)["spikes"]["n"][:, 0, 0].tolist() == [1, 0, 0]


# ------------------------------------------------------------ hostile files
def test_a_deep_chain_imports_without_recursion():
    nodes, edges, prev = {"input": inp(1)}, [], "input"
    for i in range(1500):
        nodes[f"w{i}"] = nir.Linear(weight=np.ones((1, 1)))
        nodes[f"n{i}"] = lif(1)
        edges += [(prev, f"w{i}"), (f"w{i}", f"n{i}")]
        prev = f"n{i}"
    nodes["output"] = out(1)
    edges.append((prev, "output"))
    assert len(import_nir(graph(nodes, edges)).net.layers) == 1500


def _hdf5_with(path, dataset: str, shape, *, first_chunk: bool = False) -> None:
    nir.write(str(path), chain(lif(2), 2, np.ones((2, 2))))
    with h5py.File(path, "r+") as f:
        del f[dataset]
        # declared, never written (or one chunk of it: the file then stores some data)
        f.create_dataset(dataset, shape=shape, dtype="f8", chunks=(1, shape[1]))
        if first_chunk:
            f[dataset][0] = 1.0


def test_a_file_declaring_huge_arrays_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.nir"
    _hdf5_with(path, "node/nodes/w/weight", (30000, 30000), first_chunk=True)
    error = _error_of(path)  # (the other arrays: a few values, as this nir writes them)
    assert re.fullmatch(re.escape(f"{path}: dataset 'node/nodes/w/weight' (900000000 values) "
                                  f"brings the file to ") + r"9000000\d\d" + re.escape(
        " values, more than the 8388608 a NIR file may declare"), error), error


def test_a_dataset_without_data_is_refused(tmp_path):
    path = tmp_path / "hollow.nir"
    _hdf5_with(path, "node/nodes/w/weight", (2, 2))
    assert _error_of(path) == f"{path}: dataset 'node/nodes/w/weight' declares 4 values but " \
        "stores none"


def test_a_fifo_is_not_read(tmp_path):
    path = tmp_path / "pipe.nir"
    os.mkfifo(path)
    assert _error_of(path) == f"{path}: not a regular file"


def test_a_huge_direct_edge_is_refused():
    n = 5000
    g = graph({"input": inp(n), "n": lif(n), "output": out(n)},
              [("input", "n"), ("n", "output")])
    assert _error(g) == ("node 'input': a direct edge of 5000 values would be an 5000 x 5000 "
                         "identity matrix, more than 8388608 entries; put a weight node between")


def test_an_input_shape_that_is_not_integers_is_named():
    g = chain(lif(2), 2, np.ones((2, 2)))
    g.nodes["input"].input_type = {"input": np.array(["a", "b"])}
    assert _error(g).startswith("node 'input': the Input node has no valid input_type (")


def _error_of(path) -> str:
    with pytest.raises(NirError) as err:
        import_nir(path)
    return str(err.value)


# ------------------------------------------------- bad convolution and pool nodes
def _if(shape):
    return spiking(nir.IF, np.zeros(shape), r=np.ones(shape), v_threshold=np.ones(shape))


def _conv(weight, groups=1):
    return nir.Conv2d(input_shape=(4, 4), weight=weight, stride=1, padding=0, dilation=1,
                      groups=groups, bias=np.zeros(weight.shape[0]))


def _feature_graph(in_shape, middle: dict, out_shape):
    names = ["input", *middle, "n", "output"]
    nodes = {"input": nir.Input(input_type={"input": np.array(in_shape)}), **middle,
             "n": _if(out_shape),
             "output": nir.Output(output_type={"output": np.array([math.prod(out_shape)])})}
    return graph(nodes, list(zip(names, names[1:], strict=False)))


@pytest.mark.parametrize(("case", "message"), [
    ("rank", "node 'c': the kernel has shape (3, 2, 3), expected [C_out, C_in/groups, k, k]"),
    ("groups", "node 'c': input from 'input': groups=2 does not divide the 3 input channels "
               "and the 2 output channels"),
    ("tile", "node 'p': pool kernel (2, 2), stride (2, 2), padding (0, 0) does not tile the "
             "map (5, 5) ((1, 1) left over per dimension)"),
    ("size", "node 'c': its output has 12 values but its target 'n' has 27 neurons"),
])
def test_bad_convolutions_and_pools_are_named(case, message):
    g = {
        "rank": lambda: _feature_graph([2, 4, 4], {"c": _conv(np.ones((3, 2, 3)))}, (3, 2, 2)),
        "groups": lambda: _feature_graph([3, 4, 4], {"c": _conv(np.ones((2, 1, 3, 3)), 2)},
                                         (2, 2, 2)),
        "tile": lambda: _feature_graph([1, 5, 5], {
            "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                               padding=np.array([0, 0])),
            "f": nir.Flatten(input_type={"input": np.array([1, 2, 2])}, start_dim=0),
            "w": nir.Linear(weight=np.ones((2, 4)))}, (2,)),
        "size": lambda: _feature_graph([2, 4, 4], {"c": _conv(np.ones((3, 2, 3, 3)))}, (3, 3, 3)),
    }[case]()
    assert _error(g) == message



def test_scalar_parameters_take_their_size_from_a_pool():
    """A neuron node with scalar parameters after a pool alone: its size is the pooled
    map's (4 windows of a 4 x 4 map), and each window sums its 4 spikes."""
    n = spiking(nir.IF, np.array(0.0), r=np.array(1.0), v_threshold=np.array(10.0))
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
             "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                padding=np.array([0, 0])),
             "n": n, "output": out(4)}
    imp = import_nir(graph(nodes, [("input", "p"), ("p", "n"), ("n", "output")]))
    layer = imp.net.layers[0]
    assert layer.size == 4
    flt = imp.float_net.run(torch.ones(1, 1, 16))
    assert flt["membranes"]["n"][0, 0].tolist() == [4.0] * 4


def test_a_pool_after_a_convolution_is_folded_exactly():
    """Conv2d -> SumPool2d -> IF is no pool-then-weight chain: it is folded into one
    dense matrix, which must compute what PyTorch's convolution then sum pool do."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 1, 3, 3))
    shape = (2, 3, 3)
    nodes = {"input": nir.Input(input_type={"input": np.array([1, 6, 6])}),
             "c": nir.Conv2d(input_shape=(6, 6), weight=w, stride=1, padding=1, dilation=1,
                             groups=1, bias=np.zeros(2)),
             "p": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                padding=np.array([0, 0])),
             "n": spiking(nir.IF, np.zeros(shape), r=np.ones(shape),
                          v_threshold=np.full(shape, 100.0)),
             "output": out(18)}
    imp = import_nir(graph(nodes, [("input", "c"), ("c", "p"), ("p", "n"), ("n", "output")]),
                     framework="nir")
    assert imp.float_net.layers[0].inputs[0][0].conv is None  # the folded dense matrix
    x = torch.from_numpy(rng.integers(0, 2, (1, 1, 36))).double()
    conv = torch.nn.functional.conv2d(x.reshape(1, 1, 6, 6), torch.from_numpy(w), padding=1)
    want = torch.nn.functional.avg_pool2d(conv, 2, divisor_override=1).reshape(-1)
    assert torch.allclose(imp.float_net.run(x)["membranes"]["n"][0, 0], want, rtol=1e-12)
