"""The per-token energy estimate of a sequence model beside a KV-cache transformer."""

from __future__ import annotations

import pytest
from spikeforge.demo import shipped_model
from spikeforge.golden.energy import counts_from_trace, estimate
from spikeforge.golden.modelfile import load_model
from spikeforge.golden.tokenenergy import attention_pj, token_energy
from spikeforge.golden.train import task_data


@pytest.fixture(scope="module")
def recall():
    net, meta = load_model(shipped_model("recall"))
    x, _ = task_data(meta, "test")
    x = x[:, :16]
    return net, counts_from_trace(net, x, net.run(x))


def test_attention_terms_by_hand():
    # 8-bit multiply 0.2 pJ + 32-bit add 0.1 pJ per MAC; fp32 multiply 3.7 + add 0.9;
    # a 20-byte cache is in the 8 KB class: 10 pJ per 64 bits.
    got = attention_pj(2, 3, 4, acc_bits=32)
    assert got == pytest.approx({"scores": 4 * 2 * 0.3, "softmax": 4 * 4.6,
                                 "mixing": 4 * 3 * 0.3, "cache": (5 * 8 + 4 * 5 * 8) * 10 / 64})


def test_attention_cache_reads_get_dearer_with_the_sram_class():
    # 16 + 16 bytes per token: 256 tokens fill 8 KB, 257 need the 32 KB class.
    per_token = [attention_pj(16, 16, c, acc_bits=32)["cache"] for c in (256, 257)]
    assert per_token[1] / 257 > 1.9 * per_token[0] / 256


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_attention_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match=rf"^context must be a positive integer, not "
                                         rf"{bad!r}$"):
        attention_pj(4, 4, bad, acc_bits=32)


def test_token_energy_splits_the_model_and_grows_only_for_attention(recall):
    net, counts = recall
    r = token_energy(net, counts, contexts=[16, 64, 256, 1024])
    e = estimate(net, counts)
    steps = counts["timesteps"]
    assert r["estimate"] is True and r["tokens"] == 16 * steps
    assert r["snn_pj_per_token"] == pytest.approx(e["snn"]["total_pj"] / steps)
    assert r["ssm_pj_per_token"] == pytest.approx(e["snn"]["energy_pj"]["ssm"] / steps)
    assert r["ssm_pj_per_token"] + r["rest_pj_per_token"] == pytest.approx(
        r["snn_pj_per_token"])
    ratios = [row["ratio"] for row in r["contexts"]]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < ratios[0]
    for row in r["contexts"]:
        want = sum(attention_pj(16, 16, row["context"], acc_bits=net.fmt.acc_bits).values())
        assert row["attention_pj_per_token"] == pytest.approx(want)
        assert row["transformer_pj_per_token"] == pytest.approx(r["rest_pj_per_token"] + want)


def test_crossover_is_the_least_context_where_attention_costs_more(recall):
    net, counts = recall
    r = token_energy(net, counts)
    c, acc = r["crossover_context"], net.fmt.acc_bits

    def cost(context):
        return sum(attention_pj(16, 16, context, acc_bits=acc).values())

    assert c is not None and c > 1
    assert cost(c) > r["ssm_pj_per_token"] >= cost(c - 1)


def test_token_energy_needs_an_ssm_layer_and_sane_contexts(recall):
    net, counts = recall
    digits, _ = load_model(shipped_model("digits"))
    with pytest.raises(ValueError, match=r"^the model has no SSM layer: there is no token "
                                         r"mixer to set beside attention$"):
        token_energy(digits, counts)
    with pytest.raises(ValueError, match=r"^contexts must be integers in 1\.\.1048576, "
                                         r"not \[64, 0\]$"):
        token_energy(net, counts, contexts=[64, 0])
