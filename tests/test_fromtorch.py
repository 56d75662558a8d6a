"""snnTorch modules to the integer model from Python (golden/fromtorch.py,
``spikeforge.from_snntorch``), and the resets NIR does not carry (golden/nirreset.py):
snnTorch's subtraction at the next step, the warning for a file that looks like
snnTorch's export.  The tests that need snnTorch skip without it (it is the
``snntorch`` extra: ``pip install -e '.[test,snntorch]'``); the NIR-file tests run
everywhere."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from spikeforge.cli import main
from spikeforge.golden.nir import import_nir
from spikeforge.golden.nirgraph import new_graph
from spikeforge.golden.nirreset import ConversionWarning

DATA = Path(__file__).parent / "data"
DT = 1e-4
MODERN_NIR = "v_reset" in inspect.signature(nir.LIF).parameters
needs_modern_nir = pytest.mark.skipif(not MODERN_NIR, reason="nir <= 1.0.4 has no v_reset")


@pytest.fixture
def snn():
    if importlib.util.find_spec("nirtorch") is None:
        pytest.skip("nirtorch not installed (pip install -e '.[snntorch]')")
    return pytest.importorskip("snntorch", reason="snntorch not installed "
                                                   "(pip install -e '.[snntorch]')")


def _net(snn, *, beta=0.9, threshold=1.0, hidden_kind="Leaky", **neuron):
    """12 -> 10 -> 4, weights large enough that both layers spike often."""
    gen = torch.Generator().manual_seed(7)
    lin1, lin2 = torch.nn.Linear(12, 10), torch.nn.Linear(10, 4)
    with torch.no_grad():
        lin1.weight.copy_(torch.randn(10, 12, generator=gen) * 0.9)
        lin1.bias.copy_(torch.randn(10, generator=gen) * 0.1)
        lin2.weight.copy_(torch.randn(4, 10, generator=gen) * 0.9)
        lin2.bias.zero_()
    extra = {"alpha": 0.5} if hidden_kind == "Synaptic" else {}
    hidden = getattr(snn, hidden_kind)(beta=beta, threshold=threshold, init_hidden=True,
                                       **extra, **neuron)
    return torch.nn.Sequential(lin1, hidden, lin2,
                               snn.Leaky(beta=beta, threshold=threshold, init_hidden=True,
                                         output=True, **neuron))


def _spikes(steps=24, samples=32, seed=3, size=12):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, samples, size, generator=gen) < 0.3).to(torch.int64)


# --------------------------------------------------------------- the Python API
def test_default_subtract_and_scalar_beta_convert_exactly_without_warnings(snn):
    import spikeforge

    net = _net(snn)  # snnTorch's defaults: reset_mechanism="subtract", reset_delay=True
    net(torch.rand(2, 12))  # as after training: hidden states with a gradient history
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        conv = spikeforge.from_snntorch(net)
    assert conv.warnings == []
    assert "'1': Leaky x10, beta 0.9 (scalar, broadcast), threshold 1 (scalar, broadcast), " \
        "reset_mechanism 'subtract' (reset_delay=True: reset 'subtract-next')" in conv.notes
    # The correction edge: a recurrent projection from each layer to itself.
    for layer in conv.net.layers:
        assert layer.reset == "subtract"
        assert [(p.source, p.recurrent) for p in layer.inputs][-1] == (layer.name, True)
    x = _spikes()
    report = conv.compare(x)
    want = conv.run_module(x)
    assert int(want.sum()) > 100  # the output layer is active
    assert report["spike_agreement"]["float"] == 1.0
    assert report["spike_agreement"]["integer"] >= 0.97
    assert conv.check["spike_agreement"]["float"] == 1.0
    # Without the correction (the integer subtract alone) the float model is not
    # snnTorch's: the reset read from the module is what makes it exact.
    for node in conv.graph.nodes.values():
        node.metadata = {}
    with pytest.warns(ConversionWarning):
        plain = import_nir(conv.graph, reset=None)  # snnTorch's file as written: zero
    zero = plain.float_net.run(x)["spikes"][plain.net.output]
    assert float((zero == want.double()).double().mean()) < 0.99
    plain = import_nir(conv.graph, reset="subtract")
    sub = plain.float_net.run(x)["spikes"][plain.net.output]
    assert float((sub == want.double()).double().mean()) < 1.0


@pytest.mark.parametrize("options", [{"reset_mechanism": "zero"},
                                     {"reset_mechanism": "none", "threshold": 3.0},
                                     {"beta": 1.0 - 2.0 ** -6}])
def test_each_leaky_reset_is_read_from_the_module(snn, options):
    import spikeforge

    options = {"beta": torch.linspace(0.5, 0.95, 10), **options}
    gen = torch.Generator().manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(12, 10), snn.Leaky(init_hidden=True, output=True,
                                                                 **options))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(10, 12, generator=gen) * 0.9)
    conv = spikeforge.from_snntorch(net)
    want = {"zero": "zero", "none": "none"}.get(options.get("reset_mechanism"), "subtract")
    assert conv.net.layers[0].reset == want
    x = _spikes()
    report = conv.compare(x)
    assert report["spike_agreement"]["float"] == 1.0, (options, report)
    assert report["spike_agreement"]["integer"] >= 0.95
    assert int(conv.run_module(x).sum()) > 50


def test_predict_compare_save_and_the_nir_file_give_the_same_model(snn, tmp_path, capsys):
    import spikeforge
    from spikeforge.golden.modelfile import load_model

    conv = spikeforge.from_snntorch(_net(snn))
    x = _spikes(samples=40)
    y = conv.run_module(x).sum(0).argmax(-1)  # labels the module gets right
    report = conv.compare(x, y.numpy())
    assert report["accuracy"]["snntorch"] == 1.0
    assert report["accuracy"]["integer"] == float((conv.predict(x) == y).double().mean())
    assert conv.predict(x).shape == (40,)
    conv.save(tmp_path / "m.safetensors")
    net, meta = load_model(tmp_path / "m.safetensors")
    assert torch.equal(net.run(x).outputs[net.output], conv.outputs(x))
    assert meta["snntorch"]["warnings"] == []
    # The NIR file: no option needed, no warning, the same integer model.
    conv.save_nir(tmp_path / "m.nir")
    assert main(["import-nir", str(tmp_path / "m.nir"), "--out", str(tmp_path / "n.safetensors")
                 ]) == 0
    out = capsys.readouterr()
    assert "warning" not in out.err and "reset subtract-next in '1', '3'" in out.out
    again, _ = load_model(tmp_path / "n.safetensors")
    assert torch.equal(again.run(x).outputs[again.output], conv.outputs(x))


def test_fit_says_whether_each_board_takes_the_model(snn):
    import spikeforge

    conv = spikeforge.from_snntorch(_net(snn))
    entries = conv.fit(x=_spikes(samples=4))
    assert {e["board"] for e in entries} >= {"icebreaker", "ulx3s-85f"}
    (one,) = conv.fit("ulx3s-85f", x=_spikes(samples=4))
    assert one["fits"] and one["clocks"]["kind"] == "estimate" and one["clocks"]["samples"] == 4
    # The correction edges cost edges: the iCEBreaker's core takes 3, the net needs 4 ...
    (ice,) = conv.fit("icebreaker")
    assert not ice["fits"] and ice["error"] == "4 edges exceed max_edges=3", ice
    # ... and 2 without them, at the price of a warned difference.
    with pytest.warns(ConversionWarning, match=r"module '1': exact_reset=False: the integer "
                                               r"subtract without the correction edge"):
        plain = spikeforge.from_snntorch(_net(snn), exact_reset=False)
    (ice,) = plain.fit("icebreaker")
    assert ice["fits"] and ice["clocks"]["kind"] == "bound", ice
    with pytest.raises(ValueError, match="unknown board 'nope'; choose from icebreaker"):
        conv.fit("nope")


def test_errors_name_what_cannot_be_converted(snn):
    import spikeforge

    leaky = {"beta": 0.9, "init_hidden": True}
    cases = [
        (torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.2), snn.Leaky(**leaky)),
         "module '1' is a Dropout, which snnTorch's NIR export does not map (a Dropout is the "
         "identity in evaluation: remove it)"),
        (torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(**leaky))),
         "module '0' is a Sequential, which snnTorch's NIR export does not map (nested "
         "modules: put the layers directly in the network)"),
        (torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()),
         "module '1' is a ReLU"),
        (torch.nn.Sequential(torch.nn.Linear(4, 3)), "the network has no Leaky or Synaptic"),
        (torch.nn.Sequential(torch.nn.Linear(4, 3),
                             snn.Leaky(graded_spikes_factor=2.0, **leaky)),
         "module '1': graded_spikes_factor=2; the integer model's spikes are 0/1"),
        (torch.nn.Sequential(torch.nn.Linear(4, 3),
                             snn.Leaky(threshold=torch.ones(2), **leaky)),
         "running the network on zeros of shape [1, 4] (batch, input_shape) failed: "
         "RuntimeError: The size of tensor a (3) must match"),
        (torch.nn.Sequential(torch.nn.Linear(4, 3), snn.Leaky(**leaky)),
         "input_shape must be positive integers, not (4, 0)"),
    ]
    for i, (net, message) in enumerate(cases):
        with pytest.raises(ValueError, match=re.escape(message)):
            spikeforge.from_snntorch(net, (4, 0) if i == len(cases) - 1 else None)
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, not str"):
        spikeforge.from_snntorch("net")

    class Tripled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.lif = snn.Leaky(**leaky)

        def forward(self, x):
            return self.lif(self.fc(x) * 3.0)

    from spikeforge.golden.nirgraph import NirError

    with pytest.raises(NirError, match=r"snnTorch's NIR export failed: .* \(it traces the "
                                       r"calls of the network's modules"):
        spikeforge.from_snntorch(Tripled())


def test_what_differs_is_warned_at_conversion(snn):
    import spikeforge

    class Linear(torch.nn.Linear):  # what the export cannot see: its own forward
        def forward(self, x):
            return 3.0 * super().forward(x)

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = Linear(12, 10)
            self.lif = snn.Leaky(beta=0.8, init_hidden=True)

        def forward(self, x):
            return self.lif(self.fc(x))

    with pytest.warns(ConversionWarning, match=r"the imported float model's output spikes "
                      r"equal the module's own forward pass on only 0\.\d+ of 32 steps x 16 "
                      r"random samples"):
        conv = spikeforge.from_snntorch(Scaled())
    assert len(conv.warnings) == 1
    with pytest.warns(ConversionWarning, match=r"module '1': reset_delay=False with "
                      r"reset_mechanism='subtract': snnTorch's spike test then also"):
        conv = spikeforge.from_snntorch(_net(snn, reset_delay=False))
    assert conv.net.layers[0].reset == "subtract"
    assert len(conv.net.layers[0].inputs) == 1  # no correction edge
    with pytest.warns(ConversionWarning, match=r"module '1': a Synaptic with "
                      r"reset_mechanism='zero' zeroes the whole membrane"):
        spikeforge.from_snntorch(_net(snn, hidden_kind="Synaptic", reset_mechanism="zero"))
    with pytest.warns(ConversionWarning, match=r"node '1': snnTorch's reset by subtraction "
                      r"at the next step cannot be exact in a current-based layer"):
        spikeforge.from_snntorch(_net(snn, hidden_kind="Synaptic"))


def test_a_module_without_hidden_state_is_converted_and_compared_on_a_reference(snn):
    import spikeforge

    class Explicit(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(12, 4)
            self.lif = snn.Leaky(beta=torch.full((4,), 0.9), threshold=torch.ones(4))

        def forward(self, x):
            spk, _ = self.lif(self.fc(x))
            return spk

    conv = spikeforge.from_snntorch(Explicit())
    assert conv.check is None and any("no check" in n for n in conv.notes)
    x = _spikes()
    with pytest.raises(ValueError, match=r"pass its output spikes \[T, B, out\] as "
                                         r"compare\(\.\.\., reference=\)"):
        conv.compare(x)
    reference = conv.outputs(x)
    assert conv.compare(x, reference=reference)["spike_agreement"]["integer"] == 1.0
    with pytest.raises(ValueError, match=r"the reference has shape \[24, 32, 3\], expected "
                                         r"\[24, 32, 4\]"):
        conv.compare(x, reference=reference[..., :3])


# ---------------------------------------------------------- NIR files (no snnTorch)
def _lif_graph(beta, thr, weight, metadata=None):
    n = len(beta)
    tau = DT / (1 - np.asarray(beta))
    lif = nir.LIF(tau=tau, r=tau / DT, v_leak=np.zeros(n), v_threshold=np.asarray(thr),
                  v_reset=np.zeros(n))
    if metadata:
        lif.metadata = dict(metadata)
    return new_graph({"input": nir.Input(input_type={"input": np.array([weight.shape[1]])}),
                      "w": nir.Linear(weight=weight), "lif": lif,
                      "output": nir.Output(output_type={"output": np.array([n])})},
                     [("input", "w"), ("w", "lif"), ("lif", "output")], {})


@needs_modern_nir
def test_subtract_next_is_snntorchs_recurrence():
    rng = np.random.default_rng(0)
    beta, thr = np.array([0.5, 0.8, 0.95]), np.array([1.0, 0.7, 1.3])
    weight = rng.normal(0, 0.9, (3, 5))
    x = (rng.random((30, 8, 5)) < 0.4).astype(np.int64)
    mem, spikes, spk = np.zeros((8, 3)), [], np.zeros((8, 3))
    for t in range(30):  # snnTorch's Leaky: mem = beta mem + W x - thr * (previous spike)
        mem = beta * mem + x[t] @ weight.T - thr * spk
        spk = (mem > thr).astype(float)
        spikes.append(spk)
    want = torch.from_numpy(np.stack(spikes))
    for graph, options in ((_lif_graph(beta, thr, weight), {"reset": "subtract-next"}),
                           (_lif_graph(beta, thr, weight, {"spikeforge_reset": "subtract-next"}),
                            {})):
        imported = import_nir(graph, **options)
        got = imported.float_net.run(torch.from_numpy(x))["spikes"]["lif"]
        assert torch.equal(got, want)
        assert int(want.sum()) > 50
        integer = imported.net.run(torch.from_numpy(x)).spikes["lif"]
        assert float((integer == want).double().mean()) >= 0.97
    plain = import_nir(_lif_graph(beta, thr, weight), reset="subtract")
    assert not torch.equal(plain.float_net.run(torch.from_numpy(x))["spikes"]["lif"], want)


@needs_modern_nir
def test_import_nir_of_snntorchs_file_warns_about_the_reset(tmp_path, capsys):
    nir_file, out = DATA / "snntorch_leaky.nir", str(tmp_path / "m.safetensors")
    assert main(["import-nir", str(nir_file), "--out", out]) == 0
    err = capsys.readouterr().err
    assert err.startswith("spikeforge: warning: assumed a reset to zero in 2 spiking node(s) "
                          "('1', '3') because the file says v_reset = 0; this graph looks "
                          "like snnTorch's NIR export"), err
    assert "--reset subtract-next" in err and "--reset zero keeps" in err
    assert err.count("\n") == 1
    for flag in ("zero", "subtract-next", "subtract"):
        assert main(["import-nir", str(nir_file), "--out", out, "--reset", flag]) == 0
        assert capsys.readouterr().err == ""
    # A file that does not look like snnTorch's (a leak) imports without the warning.
    graph = _lif_graph([0.9, 0.8], [1.0, 1.0], np.ones((2, 3)))
    graph.nodes["lif"].v_leak = np.array([0.1, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        import_nir(graph)
    with pytest.warns(ConversionWarning, match=r"assumed a reset to zero in 1 spiking node\(s\) "
                                               r"\('lif'\)"):
        imported = import_nir(_lif_graph([0.9, 0.8], [1.0, 1.0], np.ones((2, 3))))
    assert imported.meta["warnings"][0].startswith("assumed a reset to zero")


def test_reset_refusals_name_the_value():
    from spikeforge.golden.nirgraph import NirError

    graph = _lif_graph([0.9], [1.0], np.ones((1, 2))) if MODERN_NIR else None
    if graph is None:
        pytest.skip("nir <= 1.0.4 has no v_reset")
    with pytest.raises(NirError, match=re.escape("reset must be one of 'zero', 'subtract', "
                                                 "'subtract-next', not 'later'")):
        import_nir(graph, reset="later")
    graph.nodes["lif"].metadata = {"spikeforge_reset": "later"}
    with pytest.raises(NirError, match=re.escape("node 'lif': metadata spikeforge_reset="
                                                 "'later' is not a reset mode")):
        import_nir(graph)


# ------------------------------------------------------------ digits (slow)
def _train_digits(snn, epochs: int, steps: int = 16, seed: int = 0):
    """64 -> 64 Leaky -> 10 Leaky, snnTorch's defaults (reset by subtraction, scalar
    beta), trained on the bundled digits with the golden model's rate coding."""
    import snntorch.functional as SF
    from spikeforge.golden import tasks

    torch.manual_seed(seed)
    train = tasks.digits("train")
    x, y = train.encode("rate", steps).float(), torch.from_numpy(train.y)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), snn.Leaky(beta=0.9, init_hidden=True),
                              torch.nn.Linear(64, 10),
                              snn.Leaky(beta=0.9, init_hidden=True, output=True))
    opt, loss_fn = torch.optim.Adam(net.parameters(), lr=2e-3), SF.ce_rate_loss()
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            batch = order[i:i + 64]
            for m in net:
                if hasattr(m, "reset_mem"):
                    m.reset_mem()
            spikes = torch.stack([net(x[t, batch])[0] for t in range(steps)])
            loss = loss_fn(spikes, y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


@pytest.mark.slow
def test_a_trained_digits_network_keeps_its_accuracy(snn, tmp_path):
    import spikeforge
    from spikeforge.golden import tasks

    net = _train_digits(snn, epochs=10)
    test = tasks.digits("test")
    x, y = test.encode("rate", 16), test.y
    conv = spikeforge.from_snntorch(net)
    report = conv.compare(x, y)
    acc = report["accuracy"]
    assert acc["snntorch"] >= 0.88, acc
    assert acc["float"] == acc["snntorch"] and report["spike_agreement"]["float"] == 1.0
    assert abs(acc["integer"] - acc["snntorch"]) <= 0.005, acc
    conv.save_nir(tmp_path / "digits.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        imported = import_nir(tmp_path / "digits.nir")
    from_file = imported.net.run(x, record=False).outputs[imported.net.output]
    assert torch.equal(from_file, conv.outputs(x))


@pytest.mark.slow
def test_the_docs_example_runs(snn, tmp_path, monkeypatch, capsys):
    text = (Path(__file__).parents[1] / "docs" / "nir.md").read_text()
    code = text.split("## 6. From an snnTorch module")[1].split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/nir.md", "exec"), {})
    out = capsys.readouterr().out
    accuracy = ast.literal_eval(out.splitlines()[-2])  # {"snntorch": ..., "integer": ...}
    assert accuracy["snntorch"] > 0.8 and abs(accuracy["integer"] - accuracy["snntorch"]) < 0.02
    assert (tmp_path / "snn_digits.safetensors").is_file()
    assert (tmp_path / "snn_digits.nir").is_file()
