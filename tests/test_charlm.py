"""The character language model (issue 30, item 3): data split and alphabet, the
n-gram baselines by hand, a training step, quantization within the integer model's
bounds, ``generate`` on the simulated board (bit-exact per character) and its error
messages."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from spikeforge.golden import chardata, charlm
from spikeforge.golden.modelfile import load_model, save_model
from spikeforge.sim.verilator import missing_tools

MODELS = Path(__file__).resolve().parents[1] / "host" / "models"
SHIPPED = MODELS / "charlm.safetensors"
_missing = missing_tools()
needs_board = pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                                 + ", ".join(_missing) if _missing else "")
needs_shipped = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped charlm model")


def test_alphabet_and_fold():
    assert len(chardata.ALPHABET) == 64 == len(set(chardata.ALPHABET))
    assert chardata.fold("Hello, World?\u2019") == "hello, world!'"
    assert chardata.fold("a\tb", strict=False) == "a b"
    with pytest.raises(ValueError, match=r"^character '\\t' \(U\+0009\) at position 1 is not "
                                         r"in the model's alphabet and has no folding$"):
        chardata.fold("a\tb")
    ids = chardata.encode("az\n")
    assert ids.tolist() == [chardata.ALPHABET.index(c) for c in "az\n"]
    assert chardata.decode(ids) == "az\n"
    assert all(v in chardata.ALPHABET for v in chardata.FOLD.values())


def test_split_is_deterministic_and_held_out():
    a, b = chardata.split(), chardata.split()
    assert torch.equal(a["train"], b["train"]) and torch.equal(a["heldout"], b["heldout"])
    assert a["heldout_keys"] == ["typesmethods", "typesmodules", "typesseq",
                                 "typesseq-mutable", "unary", "while", "with", "yield"]
    assert len(a["train"]) > 400_000 and 30_000 < len(a["heldout"]) < 50_000
    assert int(a["train"].max()) < 64 and int(a["heldout"].min()) >= 0


def test_ngram_bpc_by_hand():
    # Alphabet of 2 symbols; train "abab" (a=0, b=1): bigram counts a->b 2, b->a 1.
    train, test = [0, 1, 0, 1], [0, 1, 1]
    # add-1 bigram, V = 2.  Position 0 (no history): unigram (2+1)/(4+2) = 1/2.
    # "a"->"b": (2+1)/(2+2) = 3/4;  "b"->"b": (0+1)/(1+2) = 1/3.
    want = -(math.log2(1 / 2) + math.log2(3 / 4) + math.log2(1 / 3)) / 3
    got = chardata.ngram_bpc(train, test, order=2, vocab=2, k=1.0)
    assert got == pytest.approx(want, abs=1e-12)
    # Interpolated (uniform 0.5, bigram ML 0.5); position 0 has no history: its
    # bigram part is uniform too.  ML: a->b 1, b->b 0.
    want = -(math.log2(1 / 2) + math.log2(0.25 + 0.5) + math.log2(0.25 + 0)) / 3
    got = chardata.ngram_bpc(train, test, order=2, vocab=2, weights=[0.5, 0.0, 0.5])
    assert got == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="either k"):
        chardata.ngram_bpc(train, test, order=2, vocab=2)


def _tiny(**kw):
    return charlm.Config(**{"embed": 4, "hidden": 8, "chunk": 8, "streams": 4, "steps": 3,
                            "qat_steps": 1, **kw})


def test_training_step_reduces_loss():
    cfg = _tiny(lr=0.02)
    twin = charlm.build(cfg)
    ids = chardata.encode("the cat sat on the mat. " * 20)
    charlm.calibrate_y_shift(twin, ids, cfg)
    x = torch.nn.functional.one_hot(ids[:32], 64)[:, None].float()

    def loss():
        logits, _, _ = charlm.run_twin(twin, x)
        return torch.nn.functional.cross_entropy(logits[:-1, 0], ids[1:32])

    opt = torch.optim.Adam([p for p in twin.parameters() if p.requires_grad], lr=0.02)
    with torch.no_grad():
        first = float(loss())
    for _ in range(5):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < first


def test_quantized_model_within_bounds_and_streams_match():
    cfg = _tiny()
    twin = charlm.build(cfg)
    ids = chardata.encode("some text to calibrate on, with spaces.\n" * 5)
    charlm.calibrate_y_shift(twin, ids, cfg)
    from spikeforge.golden.quantize import to_integer

    net = to_integer(twin)  # validated: weights, thresholds, decays within the format
    fmt = net.fmt
    for layer in net.layers:
        if layer.kind == "lif":
            assert all(int(p.weight.abs().max()) < 1 << (fmt.w_bits - 1) for p in layer.inputs)
        else:
            assert int(layer.decay.max()) <= fmt.one and 0 <= layer.y_shift <= 32
    # The integer model and the twin in integer-exact mode agree on the logits.
    from spikeforge.golden.quantize import enter_integer_mode

    enter_integer_mode(twin)
    x = torch.nn.functional.one_hot(ids[:40], 64)[:, None]
    logits, _, _ = charlm.run_twin(twin, x)
    scale = charlm.logit_scale_of(twin)
    membrane = net.run(x).outputs["out"]
    assert torch.allclose(charlm.integer_logits(membrane, scale), logits.double())


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny untrained charlm model (E = 4, H = 8: fits the demo configuration)."""
    cfg = _tiny()
    twin = charlm.build(cfg)
    charlm.calibrate_y_shift(twin, chardata.encode("calibration text, a line.\n" * 30), cfg)
    from spikeforge.golden.quantize import to_integer

    net = to_integer(twin)
    meta = {"task": "charlm", "alphabet": chardata.ALPHABET,
            "logit_scale": charlm.logit_scale_of(twin)}
    path = tmp_path_factory.mktemp("charlm") / "tiny.safetensors"
    save_model(path, net, meta)
    return path


def _generate(*args):
    return subprocess.run([sys.executable, "-m", "spikeforge", "generate", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_cli_errors(tmp_path, tiny_model):
    missing = tmp_path / "nope.safetensors"
    r = _generate(missing, "--prompt", "x")
    assert r.returncode == 3
    assert r.stderr.strip() == f"spikeforge: error: {missing}: no such model file"
    model = MODELS / "recall.safetensors"
    r = _generate(model, "--prompt", "x")
    assert r.returncode == 3
    assert r.stderr.strip() == (f"spikeforge: error: {model}: task='recall', not a character "
                                f"language model (task 'charlm')")
    r = _generate(tiny_model, "--prompt", "caf\u00e9 \u20ac\u00e9")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "spikeforge: error: --prompt 'caf\u00e9 \u20ac\u00e9': characters '\u00e9' (U+00E9), "
        "'\u20ac' (U+20AC) are not in the model's 64-character alphabet "
        + repr(chardata.ALPHABET))
    r = _generate(tiny_model, "--prompt", "")
    assert (r.returncode, r.stderr.strip()) == (
        2, "spikeforge: error: --prompt '' is empty; give at least one character")


@needs_shipped
def test_shipped_model_metadata():
    net, meta = load_model(SHIPPED)
    from spikeforge.generate import check_charlm_meta

    check_charlm_meta(net, meta, SHIPPED)
    assert meta["alphabet"] == chardata.ALPHABET
    bpc = meta["bpc"]
    assert bpc["integer"] < 6.0 and bpc["float_smooth"] < 6.0
    # The figures of docs/lm.md: below every n-gram baseline, near the spiking twin.
    assert bpc["integer"] < min(v for k, v in bpc.items() if "gram" in k)
    assert bpc["integer"] <= 1.1 * bpc["float_spiking"]
    assert SHIPPED.stat().st_size < 1_000_000  # (int64 weights)


@needs_board
def test_generate_on_demo_board_is_bit_exact(tiny_model):
    """A tiny model on the simulated board's default configuration (the demo build):
    a few characters, each step bit-exact, the same text twice with a seed."""
    r = _generate(tiny_model, "--prompt", "The ", "--chars", "6", "--json", "--seed", "3",
                  "--temperature", "0.8", "--device", "sim://demo")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["bit_exact"] and report["chars"] == 6 and len(report["text"]) == 6
    assert report["prompt_folded"] == "the "
    assert report["steps"] == 4 + 5 and report["clocks_per_token"] > 0
    text = _generate(tiny_model, "--prompt", "a", "--chars", "3", "--device", "sim://demo")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("a") and "every step bit-exact" in text.stdout


@pytest.mark.slow
@needs_board
@needs_shipped
def test_generate_shipped_model_on_charlm_board():
    """The shipped model on its configuration (sim://charlm, built on first use:
    a minute or two), greedy, bit-exact per step."""
    r = _generate(SHIPPED, "--prompt", "The ", "--chars", "20", "--json", "--device",
                  "sim://charlm")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["bit_exact"] and len(report["text"]) == 20


def test_choose_greedy_and_seeded_sampling():
    from spikeforge.generate import choose, prompt_ids

    membrane = torch.tensor([3, 7, 7, -2])
    assert choose(membrane, 1.0, None, torch.Generator()) == 1  # ties: the lowest index
    draws = [[choose(membrane, 4.0, 1.0, g) for _ in range(20)]
             for g in (torch.Generator().manual_seed(5), torch.Generator().manual_seed(5))]
    assert draws[0] == draws[1] and set(draws[0]) <= {0, 1, 2, 3}
    assert prompt_ids("Ab?", chardata.ALPHABET) == chardata.encode("ab!").tolist()
