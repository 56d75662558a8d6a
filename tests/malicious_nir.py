"""The malicious NIR files of the catalogue (tests/test_malicious_files.py): each case
writes its file(s) into a folder of its own and returns the command line that reads
them and a fragment of the one error line it must give."""

from __future__ import annotations

import math
import os
from pathlib import Path

import h5py
import nir
import numpy as np
from malicious_models import registry

CASES, case = registry()


def neuron(n: int) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 1e-3), r=np.full(n, 10.0), v_leak=np.zeros(n),
                   v_threshold=np.ones(n), v_reset=np.zeros(n))


def chain_graph(n: int = 2) -> nir.NIRGraph:
    return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}),
                               "w": nir.Affine(weight=np.ones((n, n)), bias=np.zeros(n)),
                               "n": neuron(n),
                               "output": nir.Output(output_type={"output": np.array([n])})},
                        edges=[("input", "w"), ("w", "n"), ("n", "output")], type_check=False)


def write(path: Path, graph) -> Path:
    nir.write(str(path), graph)
    return path


def imports(path: Path) -> list[str]:
    """``import-nir FILE --out OUT``: the model file must not appear."""
    return ["import-nir", str(path), "--out", str(path.parent / "out.safetensors")]


def surgery(d: Path, edit, graph=None) -> Path:
    """A valid NIR file edited with h5py: ``edit(file)``."""
    path = write(d / "g.nir", graph or chain_graph())
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def replace(f, name: str, **kw) -> None:
    del f[name]
    f.create_dataset(name, **kw)


@case
def case_nir_missing(d):
    return imports(d / "none.nir"), "no such NIR file"


@case
def case_nir_directory(d):
    (d / "g.nir").mkdir()
    return imports(d / "g.nir"), "not a regular file"


@case
def case_nir_empty(d):
    (d / "g.nir").write_bytes(b"")
    return imports(d / "g.nir"), "not a readable NIR file"


@case
def case_nir_not_hdf5(d):
    (d / "g.nir").write_text("this is not an HDF5 file\n" * 100)
    return imports(d / "g.nir"), "not a readable NIR file"


@case
def case_nir_fifo(d):
    os.mkfifo(d / "g.nir")
    return imports(d / "g.nir"), "not a regular file"


@case
def case_nir_dev_zero(d):
    (d / "g.nir").symlink_to("/dev/zero")
    return imports(d / "g.nir"), "not a regular file"


@case
def case_nir_hdf5_without_a_graph(d):
    with h5py.File(d / "g.nir", "w") as f:
        f.create_dataset("x", data=np.arange(3))
    return imports(d / "g.nir"), "not a readable NIR file"


@case
def case_nir_sparse_2gib(d):
    path = write(d / "g.nir", chain_graph())
    with open(path, "r+b") as f:
        f.truncate(2 << 30)
    return imports(path), "bytes, more than the"


@case
def case_nir_hollow_30000x30000(d):
    """A 37 KB file declaring a 30000 x 30000 weight with no data (fill value)."""
    path = surgery(d, lambda f: replace(f, "node/nodes/w/weight", shape=(30000, 30000),
                                        dtype="f8", chunks=(100, 100)))
    return imports(path), "dataset 'node/nodes/w/weight' declares 900000000 values but stores none"


@case
def case_nir_hollow_2000x2000(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/w/weight", shape=(2000, 2000),
                                        dtype="f8", chunks=(100, 100)))
    return imports(path), "declares 4000000 values but stores none"


@case
def case_nir_one_chunk_of_8000x8000(d):
    """One chunk written: the file stores data, and declares 64 M values."""
    def edit(f):
        replace(f, "node/nodes/w/weight", shape=(8000, 8000), dtype="f8", chunks=(1, 8000))
        f["node/nodes/w/weight"][0] = 1.0
    return imports(surgery(d, edit)), "more than the"


@case
def case_nir_compressed_zeros_5000x5000(d):
    """25 M zeros gzip to a few hundred KB."""
    def edit(f):
        replace(f, "node/nodes/w/weight", data=np.zeros((5000, 5000), np.float32),
                compression="gzip", chunks=(500, 5000))
    return imports(surgery(d, edit)), "more than the"


@case
def case_nir_hollow_edges(d):
    """The edge list declares 10**8 string pairs and stores none."""
    path = surgery(d, lambda f: replace(f, "node/edges", shape=(10**8, 2),
                                        dtype=h5py.string_dtype(), chunks=(1000, 2)))
    return imports(path), "node/edges"


@case
def case_nir_huge_fixed_strings(d):
    """A node type declared as one 1 GB fixed-length string, stored compressed."""
    path = surgery(d, lambda f: replace(f, "node/nodes/w/type", shape=(1,), dtype="S1000000000",
                                        chunks=(1,), compression="gzip"))
    return imports(path), "node/nodes/w/type"


@case
def case_nir_external_storage_fifo(d):
    """A weight whose data lives in an external file that is a FIFO with no writer."""
    os.mkfifo(d / "pipe")

    def edit(f):
        replace(f, "node/nodes/w/weight", shape=(2, 2), dtype="f8",
                external=[(str(d / "pipe"), 0, h5py.h5f.UNLIMITED)])
    return imports(surgery(d, edit)), "node/nodes/w/weight"


@case
def case_nir_external_link_to_fifo(d):
    """A node that is an HDF5 external link to a FIFO with no writer."""
    os.mkfifo(d / "pipe.h5")

    def edit(f):
        del f["node/nodes/w"]
        f["node/nodes/w"] = h5py.ExternalLink(str(d / "pipe.h5"), "/x")
    return imports(surgery(d, edit)), "link"


@case
def case_nir_soft_link_cycle(d):
    def edit(f):
        del f["node/nodes/w"]
        f["node/nodes/w"] = h5py.SoftLink("/node")
    return imports(surgery(d, edit)), "link"


@case
def case_nir_groups_nested_3000_deep(d):
    def edit(f):
        g = f["node/nodes/w"]
        for _ in range(3000):
            g = g.create_group("g")
    return imports(surgery(d, edit)), "deep"


@case
def case_nir_33000_objects(d):
    def edit(f):
        junk = f.create_group("junk")
        for i in range(33_000):
            junk.create_group(str(i))
    return imports(surgery(d, edit)), "more than 32768 objects"


@case
def case_nir_nan_weight(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/w/weight",
                                        data=np.array([[1.0, np.nan], [0.0, 1.0]])))
    return imports(path), "node 'w': parameter 'weight' has non-finite values"


@case
def case_nir_weight_of_the_wrong_shape(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/w/weight", data=np.ones((2, 3))))
    return imports(path), "node 'w': weight has 3 inputs but its input has 2 values"


@case
def case_nir_weight_3d(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/w/weight", data=np.ones((2, 2, 2))))
    return imports(path), "node 'w': weight has shape (2, 2, 2), expected [out, in]"


@case
def case_nir_weight_as_strings(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/w/weight",
                                        data=np.array([[b"a", b"b"], [b"c", b"d"]])))
    return imports(path), "node 'w': parameter 'weight' is not numeric"


@case
def case_nir_threshold_as_string(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/n/v_threshold", data=b"one"))
    return imports(path), "not a readable NIR file"


@case
def case_nir_input_shape_string(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/input/shape", data=b"12"))
    return imports(path), "node 'input': the Input node has no valid input_type"


@case
def case_nir_input_shape_negative(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/input/shape", data=np.array([-2])))
    return imports(path), "node 'input': the Input node has no valid input_type"


@case
def case_nir_input_shape_float(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/input/shape", data=np.array([1e12])))
    return imports(path), "node 'input': the Input node has no valid input_type"


@case
def case_nir_input_of_4_million_values(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/input/shape",
                                        data=np.array([4, 1024, 1024])))
    return imports(path), "node 'input': the input has 4194304 values, more than"


@case
def case_nir_direct_input_of_50000_neurons(d):
    n = 50_000
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}),
                            "n": neuron(n),
                            "output": nir.Output(output_type={"output": np.array([n])})},
                     edges=[("input", "n"), ("n", "output")], type_check=False)
    return imports(write(d / "g.nir", g)), "a direct edge of 50000 values"


@case
def case_nir_edge_to_a_missing_node(d):
    g = chain_graph()
    g.edges.append(("n", "ghost"))
    return imports(write(d / "g.nir", g)), "node 'ghost' does not exist"


@case
def case_nir_cycle_of_weight_nodes(d):
    g = chain_graph()
    g.nodes["w2"] = nir.Linear(weight=np.ones((2, 2)))
    g.edges = [("input", "n"), ("w", "w2"), ("w2", "w"), ("w2", "n"), ("n", "output")]
    return imports(write(d / "g.nir", g)), "cycle of weight, pool or pass-through nodes"


@case
def case_nir_cycle_unreachable_from_the_input(d):
    g = chain_graph()
    g.nodes.update(a=neuron(2), b=neuron(2), wa=nir.Linear(weight=np.ones((2, 2))),
                   wb=nir.Linear(weight=np.ones((2, 2))))
    g.edges += [("a", "wa"), ("wa", "b"), ("b", "wb"), ("wb", "a")]
    return imports(write(d / "g.nir", g)), "is not reachable from the Input node"


@case
def case_nir_two_inputs(d):
    g = chain_graph()
    g.nodes["input2"] = nir.Input(input_type={"input": np.array([2])})
    return imports(write(d / "g.nir", g)), "exactly one Input node"


@case
def case_nir_unsupported_node(d):
    g = chain_graph()
    g.nodes["w"] = nir.Delay(delay=np.ones(2))
    return imports(write(d / "g.nir", g)), "node 'w': Delay is not supported"


@case
def case_nir_node_type_numeric(d):
    path = surgery(d, lambda f: replace(f, "node/nodes/w/type", data=np.arange(3)))
    return imports(path), "not a readable NIR file"


@case
def case_nir_chain_of_1500_scalar_neurons(d):
    """1,500 neuron nodes whose scalar parameters take their size from the node before
    (a recursive walk would overflow the stack); the last one's threshold is NaN."""
    path = write(d / "g.nir", chain_graph())
    with h5py.File(path, "r+") as f:
        nodes = f["node/nodes"]
        edges = [(b"input", b"w"), (b"w", b"n")]
        prev = "n"
        for i in range(1500):
            g = nodes.create_group(f"s{i}")
            g["type"] = b"IF"
            g["r"], g["v_threshold"], g["v_reset"] = 1.0, math.nan if i == 1499 else 1.0, 0.0
            edges.append((prev.encode(), f"s{i}".encode()))
            prev = f"s{i}"
        edges.append((prev.encode(), b"output"))
        replace(f, "node/edges", data=np.array(edges, dtype=object),
                dtype=h5py.string_dtype())
    return imports(path), "node 's1499': parameter 'v_threshold' has non-finite values"


@case
def case_nir_graphs_nested_200_deep(d):
    inner = chain_graph()
    for _ in range(200):
        inner = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                                    "g": inner,
                                    "output": nir.Output(output_type={"output": np.array([2])})},
                             edges=[("input", "g"), ("g", "output")], type_check=False)
    return imports(write(d / "g.nir", inner)), "deep"


def _conv_node(group, channels: int, shape) -> None:
    """Make ``group`` a 1x1 ``Conv2d`` node from one channel to ``channels``."""
    for key in list(group):
        del group[key]
    group["type"] = b"Conv2d"
    group["input_shape"] = np.array(shape)
    group["weight"] = np.ones((channels, 1, 1, 1))
    group["bias"] = np.zeros(channels)
    group["stride"], group["dilation"] = np.array([1, 1]), np.array([1, 1])
    group["padding"] = np.array([0, 0])
    group["groups"] = 1


def _scalar_if(group) -> None:
    """Make ``group`` an ``IF`` node with scalar parameters."""
    for key in list(group):
        del group[key]
    group["type"] = b"IF"
    group["r"], group["v_threshold"], group["v_reset"] = 1.0, 1.0, 0.0


@case
def case_nir_conv_of_67m_neurons(d):
    """A 1x1 convolution into scalar-parameter neurons: 1,024 channels of a 256 x 256
    map, 67 M neurons from a file of a few KB."""
    def edit(f):
        _conv_node(f["node/nodes/w"], 1024, (256, 256))
        _scalar_if(f["node/nodes/n"])
        replace(f, "node/nodes/input/shape", data=np.array([1, 256, 256]))
        replace(f, "node/nodes/output/shape", data=np.array([1024, 256, 256]))
    return imports(surgery(d, edit)), \
        "node 'w': the convolution's output (1024, 256, 256) has 67108864 values, more than"


def _fold_graph(first) -> nir.NIRGraph:
    """``first`` then a ``Linear``: a chain folded into one dense matrix."""
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 256, 256])}),
               "first": first,
               "b": nir.Linear(weight=np.ones((2, 65536))),
               "n": neuron(2),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "first"), ("first", "b"), ("b", "n"), ("n", "output")],
        type_check=False)


@case
def case_nir_fold_of_a_convolution_over_a_large_map(d):
    """Conv2d -> Linear folds into one matrix: the convolution's on a 65,536-value map
    would be 65536 x 65536 (and its identity as large)."""
    conv = nir.Conv2d(input_shape=(256, 256), weight=np.ones((1, 1, 1, 1)), stride=1,
                      padding=0, dilation=1, groups=1, bias=np.zeros(1))
    return imports(write(d / "g.nir", _fold_graph(conv))), \
        "node 'first': folding the chain would write this convolution as a 65536 x 65536"


@case
def case_nir_fold_of_a_pool_over_a_large_map(d):
    """SumPool2d -> SumPool2d -> Linear folds into one matrix: the first pool's would be
    65536 x 65536."""
    g = _fold_graph(nir.SumPool2d(kernel_size=np.array([1, 1]), stride=np.array([1, 1]),
                                  padding=np.array([0, 0])))
    g.nodes["p2"] = nir.SumPool2d(kernel_size=np.array([1, 1]), stride=np.array([1, 1]),
                                  padding=np.array([0, 0]))
    g.edges = [("input", "first"), ("first", "p2"), ("p2", "b"), ("b", "n"), ("n", "output")]
    return imports(write(d / "g.nir", g)), \
        "node 'first': folding the chain would write this pool as a 65536 x 65536"


@case
def case_nir_affine_into_a_pool(d):
    """A pool after an Affine of 1,000,000 outputs (a flat vector, not a map)."""
    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1])}),
               "a": nir.Affine(weight=np.ones((1_000_000, 1), np.float32),
                               bias=np.zeros(1_000_000, np.float32)),
               "p": nir.SumPool2d(kernel_size=np.array([1000, 1000]),
                                  stride=np.array([1000, 1000]), padding=np.array([0, 0])),
               "b": nir.Linear(weight=np.ones((2, 1))),
               "n": neuron(2),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "a"), ("a", "p"), ("p", "b"), ("b", "n"), ("n", "output")],
        type_check=False)
    return imports(write(d / "g.nir", g)), "node 'p': a SumPool2d needs a (C, H, W) input"


@case
def case_nir_many_direct_edges(d):
    """Forty direct edges from a 2,000-value input: each an identity of 4 M entries."""
    n = 2000
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n])}),
                            "output": nir.Output(output_type={"output": np.array([n])})},
                     edges=[], type_check=False)
    for i in range(40):
        g.nodes[f"n{i}"] = nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
        g.edges.append(("input", f"n{i}"))
    g.edges.append(("n39", "output"))
    return imports(write(d / "g.nir", g)), "weights, more than"
