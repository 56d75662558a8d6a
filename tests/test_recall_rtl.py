"""The trained recall model (golden issue: key / value LIF layers into an SSM
associative memory) on the ``demo`` build through Verilator: the same accuracy
and identical outputs (every ``y`` of every step, every hidden spike, the final
SSM state) on every test sequence.  The selective-decay variant and the digits
model on ``demo`` run with ``--runslow``."""

from __future__ import annotations

import pytest
import torch
from spikeforge.contract.compiler import compile_network
from spikeforge.golden.train import DigitsConfig, RecallConfig, evaluate, train
from spikeforge.sim.evaluate import evaluate_on_rtl
from spikeforge.sim.rtl import REFERENCE_CONFIGS
from spikeforge.sim.verilator import have_verilator

pytestmark = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")

DEMO = REFERENCE_CONFIGS["demo"]


def _train(cfg):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(cfg, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def recall_model():
    """The shipped recall model (``spikeforge train recall``, default settings)."""
    from spikeforge.demo import shipped_model
    from spikeforge.golden.modelfile import load_model

    return load_model(shipped_model("recall"))


def _check_on_demo(net, meta, samples: int) -> dict:
    report = evaluate_on_rtl(net, meta, DEMO)
    assert report["samples"] == samples
    assert report["bit_exact"], report["mismatched_samples"]
    assert report["accuracy_rtl"] == report["accuracy_golden"] == evaluate(net, meta)["accuracy"]
    return report


def test_recall_model_runs_bit_exact_on_the_rtl(recall_model):
    net, meta = recall_model
    assert net.layer("mem").kind == "ssm" and net.layer("mem").mode == "fixed"
    report = _check_on_demo(net, meta, RecallConfig().test_size)
    assert report["accuracy_rtl"] >= 0.9


def test_digits_model_fits_demo():
    """The digits network's shape (64 -> 128 -> 10, 8-bit) compiles onto ``demo``."""
    from spikeforge.golden.integer import LIFLayer, Network, Projection

    def lif(name, size, fan_in, source, **kw):
        return LIFLayer(name, size, torch.zeros(size, dtype=torch.int64),
                        torch.ones(size, dtype=torch.int64), torch.zeros(size, dtype=torch.int64),
                        [Projection(source, torch.ones(size, fan_in, dtype=torch.int64))], **kw)

    for kind in ("spike", "int"):
        net = Network(input_size=64, input_kind=kind, output="out",
                      layers=[lif("hidden", 128, 64, "input"),
                              lif("out", 10, 128, "hidden", spiking=False, reset="none")])
        compile_network(net, DEMO)  # raises FitError if it does not fit


@pytest.mark.slow
def test_selective_recall_model_runs_bit_exact_on_the_rtl():
    net, meta = _train(RecallConfig(mode="selective"))
    assert net.layer("mem").mode == "selective"
    _check_on_demo(net, meta, RecallConfig().test_size)


@pytest.mark.slow
def test_digits_model_runs_bit_exact_on_demo():
    net, meta = _train(DigitsConfig())
    _check_on_demo(net, meta, 359)
