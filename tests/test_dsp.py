"""gateware.dsp: the registered multiplier, in its fabric form (simulated) and its
ECP5 ``MULT18X18D`` form, proved equal by Yosys (SAT over every input sequence)
with a behavioural model of the block (tests/data/mult18x18d_model.v)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from spikeforge.gateware.dsp import RegisteredProduct
from yosysutil import ECP5, yosys

MODEL = Path(__file__).resolve().parent / "data" / "mult18x18d_model.v"


def test_fabric_form_is_a_product_two_clocks_later():
    dut = RegisteredProduct(a_bits=8, b_bits=5)
    rng = random.Random(1)
    pairs = [(rng.randrange(-128, 128), rng.randrange(-16, 16)) for _ in range(200)]
    pairs += [(-128, -16), (-128, 15), (127, -16), (127, 15), (0, -16)]
    got = []

    async def bench(ctx):
        for a, b in pairs + [(0, 0)]:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            await ctx.tick()  # the operands' edge, then the product's
            got.append(ctx.get(dut.p))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got[1:] == [a * b for a, b in pairs]


def _prove(tmp_path, a_bits, b_bits, model_text=None):
    gold = rtlil.convert(RegisteredProduct(a_bits=a_bits, b_bits=b_bits), name="gold")
    gate = rtlil.convert(RegisteredProduct(a_bits=a_bits, b_bits=b_bits), name="gate",
                         platform=ECP5())
    assert "MULT18X18D" in gate and "MULT18X18D" not in gold
    (tmp_path / "gold.il").write_text(gold)
    (tmp_path / "gate.il").write_text(gate)
    (tmp_path / "model.v").write_text(MODEL.read_text() if model_text is None else model_text)
    # Both start with their registers at 0; from then on the outputs must agree
    # in every clock, for every input sequence (8 clocks: the latency is 2).
    # (The model is read with -defer so that ``hierarchy`` elaborates it with the
    # instance's parameters.)
    return yosys("read_verilog -defer model.v; read_rtlil gate.il; hierarchy -top gate; "
                  "proc; flatten; read_rtlil gold.il; proc; "
                  "miter -equiv -flatten -make_outputs gold gate miter; hierarchy -top miter; "
                  "sat -verify -prove trigger 0 -set-init-zero -seq 8 -show-outputs miter",
                  tmp_path)


# ``a`` narrow (the SAT proof of a multiplier with a wide ``a`` takes more than
# ten minutes): every operand bit is wired by the same code for every width.
# The operands' signedness (SIGNEDA/SIGNEDB) only shows in product bits 18 and
# up, hence the cases with a product wider than 18 bits.
@pytest.mark.parametrize(("a_bits", "b_bits"), [(3, 5), (2, 16), (2, 18), (4, 18)])
def test_mult18x18d_form_equals_the_fabric_form(tmp_path, a_bits, b_bits):
    result = _prove(tmp_path, a_bits, b_bits)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "SAT proof finished - no model found: SUCCESS!" in result.stdout


def test_the_proof_fails_on_a_wrong_instance(tmp_path):
    """The same proof with the model's A operand unsigned (as if SIGNEDA were tied
    low) finds a counterexample (on a product wider than 18 bits): it can fail."""
    text = MODEL.read_text()
    broken = text.replace("wire [35:0] a_ext = {{18{sa & a_in[17]}}, a_in};",
                          "wire [35:0] a_ext = {18'd0, a_in};")
    assert broken != text
    result = _prove(tmp_path, 2, 18, model_text=broken)
    assert result.returncode != 0
    assert "SAT proof finished - model found: FAIL!" in result.stdout


def test_over_18_bits_stays_in_the_fabric():
    text = rtlil.convert(RegisteredProduct(a_bits=19, b_bits=8), name="top", platform=ECP5())
    assert "MULT18X18D" not in text


@pytest.mark.parametrize(("kw", "message"), [
    ({"a_bits": 0, "b_bits": 8}, "a_bits must be a positive integer, not 0"),
    ({"a_bits": 8, "b_bits": True}, "b_bits must be a positive integer, not True"),
])
def test_errors(kw, message):
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        RegisteredProduct(**kw)
