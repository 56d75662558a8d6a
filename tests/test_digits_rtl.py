"""The trained digits model (the golden issue's network) on the RTL: the same
accuracy and identical outputs on every test sample and step."""

from __future__ import annotations

import pytest
import torch
from spikeforge.golden.train import DigitsConfig, evaluate, train
from spikeforge.sim.evaluate import evaluate_on_rtl
from spikeforge.sim.rtl import REFERENCE_CONFIGS
from spikeforge.sim.verilator import have_verilator

pytestmark = pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")


@pytest.fixture(scope="module")
def digits_model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(DigitsConfig(), progress=False)
    finally:
        torch.set_num_threads(threads)


def test_digits_model_runs_bit_exact_on_the_rtl(digits_model):
    net, meta = digits_model
    report = evaluate_on_rtl(net, meta, REFERENCE_CONFIGS["digits"])
    assert report["samples"] == 359
    assert report["bit_exact"], report["mismatched_samples"]
    assert report["accuracy_rtl"] == report["accuracy_golden"] == evaluate(net, meta)["accuracy"]
    assert report["accuracy_rtl"] >= 0.95


def test_eval_on_rtl_from_the_cli(digits_model, tmp_path, capsys):
    import json

    from spikeforge.cli import main
    from spikeforge.golden.modelfile import save_model

    net, meta = digits_model
    save_model(tmp_path / "d.safetensors", net, meta)
    assert main(["eval", str(tmp_path / "d.safetensors"), "--rtl", "digits", "--limit", "20",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rtl"]["bit_exact"] is True and report["rtl"]["samples"] == 20
    assert report["rtl"]["config"] == "digits"


def test_a_model_that_does_not_fit_is_refused(digits_model, tmp_path, capsys):
    from spikeforge.cli import main
    from spikeforge.golden.modelfile import save_model

    net, meta = digits_model
    save_model(tmp_path / "d.safetensors", net, meta)
    assert main(["eval", str(tmp_path / "d.safetensors"), "--rtl", "tiny"]) == 4
    assert "input size 64 exceeds max_inputs=16" in capsys.readouterr().err
