"""The integer model's validation: every ``NetworkError`` with its exact message:
network descriptions (``golden/netcheck.py``), formats, inputs, states and layer
lookups (``golden/integer.py``) and the reference model's inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import torch
from intnets import T, const, li, lif, proj
from spikeforge.golden.integer import (
    Format,
    LIFLayer,
    Network,
    NetworkError,
    Operand,
    Projection,
    SSMLayer,
)
from spikeforge.golden.reference import run_reference

# ------------------------------------------------------------------------ validation


def raises(message: str):
    """``pytest.raises`` for a NetworkError whose message is exactly ``message``."""
    return pytest.raises(NetworkError, match=f"^{re.escape(message)}$")


@pytest.mark.parametrize("kwargs, message", [
    ({"w_bits": 1}, "Format.w_bits must be an integer in 2..48, not 1"),
    ({"u_bits": 49}, "Format.u_bits must be an integer in 2..48, not 49"),
    ({"in_bits": True}, "Format.in_bits must be an integer in 2..48, not True"),
    ({"s_bits": 8.0}, "Format.s_bits must be an integer in 2..48, not 8.0"),
    ({"y_bits": 0}, "Format.y_bits must be an integer in 2..48, not 0"),
    ({"acc_bits": 100}, "Format.acc_bits must be an integer in 2..48, not 100"),
    ({"frac_bits": -1}, "Format.frac_bits must be an integer in 0..16, not -1"),
    ({"frac_bits": 17}, "Format.frac_bits must be an integer in 0..16, not 17"),
    ({"frac_bits": False}, "Format.frac_bits must be an integer in 0..16, not False"),
])
def test_format_ranges(kwargs, message):
    with raises(message):
        Format(**kwargs)


def test_format_extremes_are_accepted():
    fmt = Format(w_bits=2, u_bits=48, frac_bits=0, in_bits=2, s_bits=48, y_bits=2, acc_bits=48)
    assert fmt.one == 1
    assert Format(frac_bits=16).one == 65536


def h_layer(name="h", inputs=None, **kw) -> LIFLayer:
    """A valid 2-neuron LIF layer "h" reading a 2-wide input, with overrides."""
    kw = {"alpha": [0, 0], "theta": [1, 1], "bias": [0, 0], **kw}
    return lif(name, inputs or [proj("input", [[1, 0], [0, 1]])], **kw)


def build(layers, *, output=None, fmt=None, input_size=2, input_kind="spike") -> Network:
    return Network(input_size=input_size, input_kind=input_kind, layers=layers,
                   output=output or layers[-1].name, fmt=fmt)


def ssm(name="s", n=2, m=2, k=None, v=None, q=None, decay=None, **kw) -> SSMLayer:
    """A valid SSM layer (constant operands, fixed decay) with overrides."""
    return SSMLayer(name, n, m, k or const([1] * n), v or const([1] * m), q or const([1] * n),
                    decay if decay is not None else T([0] * n), **kw)


@dataclass
class OddLayer:
    name: str = "odd"
    kind = "conv"
    out_size = 1


LIF_GATE = lif("g", [proj("input", [[1, 0], [0, 1]])], alpha=[0, 0])
LI_LAYER = li("li", [proj("input", [[1, 0], [0, 1]])], alpha=[0, 0])

NETWORK_CASES = [
    # ---- network level
    ("input_size", lambda: build([h_layer()], input_size=0),
     "input_size must be a positive integer, not 0"),
    ("input_size_type", lambda: build([h_layer()], input_size="2"),
     "input_size must be a positive integer, not '2'"),
    ("input_kind", lambda: build([h_layer()], input_kind="analog"),
     "input_kind must be 'spike' or 'int', not 'analog'"),
    ("no_layers", lambda: Network(input_size=2, input_kind="spike", layers=[], output="h"),
     "a network needs at least one layer"),
    ("empty_name", lambda: build([h_layer(name="")], output="x"), "layer name '' is not allowed"),
    ("input_name", lambda: build([h_layer(name="input")]), "layer name 'input' is not allowed"),
    ("non_str_name", lambda: build([h_layer(name=5)], output="x"), "layer name 5 is not allowed"),
    ("duplicate", lambda: build([h_layer(), h_layer()]), "layer name 'h' is used twice"),
    ("bad_output", lambda: build([h_layer()], output="nope"),
     "output 'nope' is not a layer (layers: ['h'])"),
    ("unknown_kind", lambda: build([OddLayer()]), "layer 'odd': unknown kind 'conv'"),
    # ---- sources
    ("unknown_source", lambda: build([h_layer(inputs=[proj("ghost", [[1]])])]),
     "layer 'h': input source 'ghost' does not exist"),
    ("li_source", lambda: build([LI_LAYER, h_layer(inputs=[proj("li", [[1, 0], [0, 1]])])]),
     "layer 'h': input source 'li' is a non-spiking LI layer, which can only be an output"),
    ("li_source_recurrent",
     lambda: build([h_layer(inputs=[proj("li", [[1, 0], [0, 1]], recurrent=True)]), LI_LAYER]),
     "layer 'h': input source 'li' is a non-spiking LI layer, which can only be an output"),
    ("later_source", lambda: build([h_layer(inputs=[proj("g", [[1, 0], [0, 1]])]), LIF_GATE]),
     "layer 'h': feed-forward input source 'g' does not come earlier in the layer order; "
     "mark the edge recurrent or reorder the layers"),
    ("self_not_recurrent", lambda: build([h_layer(inputs=[proj("h", [[1, 0], [0, 1]])])]),
     "layer 'h': feed-forward input source 'h' does not come earlier in the layer order; "
     "mark the edge recurrent or reorder the layers"),
    ("recurrent_input",
     lambda: build([h_layer(inputs=[proj("input", [[1, 0], [0, 1]], recurrent=True)])]),
     "layer 'h': input source 'input' cannot be recurrent (the model keeps no previous input)"),
    # ---- LIF parameters
    ("size", lambda: build([LIFLayer("h", 0, T([]), T([]), T([]), [])]),
     "layer 'h': size must be a positive integer, not 0"),
    ("reset", lambda: build([h_layer(reset="hard")]),
     "layer 'h': reset must be one of ('subtract', 'zero', 'none'), not 'hard'"),
    ("li_reset", lambda: build([h_layer(spiking=False)]),
     "layer 'h': a non-spiking LI layer must use reset 'none', not 'subtract'"),
    ("alpha_type", lambda: build([LIFLayer("h", 2, [0, 0], T([1, 1]), T([0, 0]), [])]),
     "layer 'h': alpha must be an int64 tensor"),
    ("theta_dtype", lambda: build([LIFLayer("h", 2, T([0, 0]), torch.ones(2, dtype=torch.int32),
                                            T([0, 0]), [])]),
     "layer 'h': theta must be an int64 tensor"),
    ("bias_shape", lambda: build([h_layer(bias=[0, 0, 0])]),
     "layer 'h': bias has shape (3,), expected (2,)"),
    ("alpha_high", lambda: build([h_layer(alpha=[257, 0])]),
     "layer 'h': alpha has values in [0, 257], outside [0, 256]"),
    ("alpha_negative", lambda: build([h_layer(alpha=[-1, 0])]),
     "layer 'h': alpha has values in [-1, 0], outside [0, 256]"),
    ("theta_zero", lambda: build([h_layer(theta=[0, 5])]),
     "layer 'h': theta has values in [0, 5], outside [1, 32767]"),
    ("theta_high", lambda: build([h_layer(theta=[128, 1])], fmt=Format(u_bits=8)),
     "layer 'h': theta has values in [1, 128], outside [1, 127]"),
    ("bias_low", lambda: build([h_layer(bias=[-129, 0])], fmt=Format(u_bits=8)),
     "layer 'h': bias has values in [-129, 0], outside [-128, 127]"),
    ("v_reset", lambda: build([h_layer(reset="zero", v_reset=128)], fmt=Format(u_bits=8)),
     "layer 'h': v_reset 128 is outside [-128, 127]"),
    ("no_inputs", lambda: build([LIFLayer("h", 2, T([0, 0]), T([1, 1]), T([0, 0]), [])]),
     "layer 'h' has no inputs"),
    ("weight_type", lambda: build([h_layer(inputs=[Projection("input", [[1, 0], [0, 1]])])]),
     "layer 'h': weight from 'input' must be an int64 tensor"),
    ("weight_float", lambda: build([h_layer(inputs=[Projection("input", torch.eye(2))])]),
     "layer 'h': weight from 'input' must be an int64 tensor"),
    ("weight_shape", lambda: build([h_layer(inputs=[proj("input", [[1, 0, 0], [0, 1, 0]])])]),
     "layer 'h': weight from 'input' has shape (2, 3), expected (2, 2)"),
    ("weight_range", lambda: build([h_layer(inputs=[proj("input", [[8, 0], [0, 1]])])],
                                   fmt=Format(w_bits=4)),
     "layer 'h': weight from 'input' has values in [0, 8], outside [-8, 7]"),
    # worst case |7| + |7| = 14 on spike inputs -> 5 signed bits ([-16, 15])
    ("accumulator", lambda: build([h_layer(inputs=[proj("input", [[7, 7], [0, 0]])])],
                                  fmt=Format(acc_bits=4)),
     "layer 'h': the worst-case synaptic sum needs 5 accumulator bits, more than acc_bits=4"),
    # ---- SSM shape and operands
    ("ssm_n", lambda: build([SSMLayer("s", 0, 2, const([]), const([1, 1]), const([]), T([]))]),
     "layer 's': n must be a positive integer, not 0"),
    ("ssm_m", lambda: build([SSMLayer("s", 2, "2", const([1, 1]), const([1, 1]), const([1, 1]),
                                      T([0, 0]))]),
     "layer 's': m must be a positive integer, not '2'"),
    ("operand_neither", lambda: build([ssm(k=Operand())]),
     "layer 's': operand k has neither a source nor a constant"),
    ("constant_type", lambda: build([ssm(v=Operand(const=[1, 1]))]),
     "layer 's': constant v must be an int64 tensor"),
    ("constant_shape", lambda: build([ssm(q=const([1, 1, 1]))]),
     "layer 's': constant q has shape (3,), expected (2,)"),
    ("constant_range", lambda: build([ssm(k=const([8, 0]))], fmt=Format(in_bits=4)),
     "layer 's': constant k has values in [0, 8], outside [-8, 7]"),
    ("operand_both", lambda: build([ssm(v=Operand("input", const=T([1, 1])))]),
     "layer 's': operand v has both a source and a constant"),
    ("operand_unknown", lambda: build([ssm(q=Operand("ghost"))]),
     "layer 's': operand q source 'ghost' does not exist"),
    ("operand_li", lambda: build([LI_LAYER, ssm(k=Operand("li"))]),
     "layer 's': operand k source 'li' is a non-spiking LI layer, which can only be an output"),
    ("operand_later", lambda: build([ssm(v=Operand("g")), LIF_GATE]),
     "layer 's': feed-forward operand v source 'g' does not come earlier in the layer order; "
     "mark the edge recurrent or reorder the layers"),
    ("operand_recurrent_input", lambda: build([ssm(k=Operand("input", recurrent=True))]),
     "layer 's': operand k source 'input' cannot be recurrent "
     "(the model keeps no previous input)"),
    ("operand_size", lambda: build([ssm(k=Operand("input"))], input_size=3),
     "layer 's': operand k source 'input' has 3 outputs, expected 2"),
    # ---- SSM decay and gate
    ("mode", lambda: build([ssm(mode="gated")]),
     "layer 's': mode must be one of ('fixed', 'selective'), not 'gated'"),
    ("decay_type", lambda: build([ssm(decay=[0, 0])]), "layer 's': decay must be an int64 tensor"),
    ("gate_in_fixed", lambda: build([LIF_GATE, ssm(gate="g")]),
     "layer 's': a gate needs mode 'selective'"),
    ("decay_shape", lambda: build([ssm(decay=T([0, 0, 0]))]),
     "layer 's': decay has shape (3,), expected (2,)"),
    ("selective_no_gate", lambda: build([ssm(mode="selective", decay=T([[0, 0]] * 4))]),
     "layer 's': selective mode needs a gate layer"),
    ("gate_unknown", lambda: build([ssm(mode="selective", gate="ghost")]),
     "layer 's': gate source 'ghost' does not exist"),
    ("gate_li", lambda: build([LI_LAYER, ssm(mode="selective", gate="li")]),
     "layer 's': gate source 'li' is a non-spiking LI layer, which can only be an output"),
    ("gate_later", lambda: build([ssm(mode="selective", gate="g", decay=T([[0, 0]] * 4)),
                                  LIF_GATE]),
     "layer 's': feed-forward gate source 'g' does not come earlier in the layer order; "
     "mark the edge recurrent or reorder the layers"),
    ("gate_input", lambda: build([ssm(mode="selective", gate="input")]),
     "layer 's': the gate 'input' must be a spiking LIF layer (one spike per neuron)"),
    ("gate_ssm", lambda: build([ssm(), ssm("s2", mode="selective", gate="s")]),
     "layer 's2': the gate 's' must be a spiking LIF layer (one spike per neuron)"),
    ("gate_too_wide", lambda: build([lif("g", [proj("input", [[1, 0]] * 9)], alpha=[0] * 9),
                                     ssm(mode="selective", gate="g")]),
     "layer 's': gate layer 'g' has 9 neurons; at most 8 (a 256-entry table)"),
    ("table_shape", lambda: build([LIF_GATE, ssm(mode="selective", gate="g", decay=T([0, 0]))]),
     "layer 's': decay table has shape (2,), expected (4, 2)"),
    ("decay_range", lambda: build([ssm(decay=T([0, 257]))]),
     "layer 's': decay has values in [0, 257], outside [0, 256]"),
    ("table_range", lambda: build([LIF_GATE, ssm(mode="selective", gate="g",
                                                 decay=T([[0, 0], [0, 0], [0, -1], [0, 0]]))]),
     "layer 's': decay has values in [-1, 0], outside [0, 256]"),
    ("y_shift_high", lambda: build([ssm(y_shift=33)]),
     "layer 's': y_shift must be an integer in 0..32, not 33"),
    ("y_shift_negative", lambda: build([ssm(y_shift=-1)]),
     "layer 's': y_shift must be an integer in 0..32, not -1"),
    # k = v = q = 2**39 - 1, s_bits 48: the readout needs n * 2**47 * (2**39 - 1) < 2**86,
    # 87 signed bits (the update (2**39 - 1)**2 + 2**47 < 2**78 needs 79).
    ("int64_overflow", lambda: build([ssm(n=1, m=1, k=const([2 ** 39 - 1]),
                                          v=const([2 ** 39 - 1]), q=const([2 ** 39 - 1]))],
                                     fmt=Format(in_bits=40, s_bits=48, y_bits=48)),
     "layer 's': the state update or readout needs 87 bits, more than the 64 of the int64 "
     "model"),
]


@pytest.mark.parametrize("make, message", [case[1:] for case in NETWORK_CASES],
                         ids=[case[0] for case in NETWORK_CASES])
def test_network_validation(make, message):
    with raises(message):
        make()


def test_the_validation_bases_are_valid():
    # The building blocks the cases above break are themselves valid.
    build([h_layer()])
    build([LIF_GATE, LI_LAYER, ssm(), ssm("s2", mode="selective", gate="g",
                                          decay=T([[0, 0]] * 4))])
    build([lif("g", [proj("input", [[1, 0]] * 8)], alpha=[0] * 8),
           ssm(mode="selective", gate="g", decay=T([[256, 0]] * 256))])


def test_unknown_layer_lookup():
    with raises("no layer named 'nope'"):
        build([h_layer()]).layer("nope")


@pytest.mark.parametrize("make_x, message", [
    (lambda: [[[0, 0]]], "input must be a tensor, not list"),
    (lambda: torch.zeros(2, 2, dtype=torch.int64), "input has shape (2, 2), expected [T, B, 2]"),
    (lambda: torch.zeros(1, 1, 3, dtype=torch.int64),
     "input has shape (1, 1, 3), expected [T, B, 2]"),
    (lambda: torch.tensor([[[0.0, 0.5]]]), "input[0, 0, 1] = 0.5 is not an integer"),
    (lambda: torch.zeros(1, 1, 2, dtype=torch.complex64),
     "input must be real numbers, not torch.complex64"),
    (lambda: T([[[0, 2]]]), "spike input must be 0/1: values in [0, 2] are outside [0, 1]"),
    (lambda: T([[[-1, 1]]]), "spike input must be 0/1: values in [-1, 1] are outside [0, 1]"),
])
def test_spike_input_validation(make_x, message):
    net = build([h_layer()])
    with raises(message):
        net.run(make_x())


def test_float_and_bool_inputs_holding_integers_are_taken():
    net = build([h_layer()])
    want = net.run(T([[[1, 0]], [[0, 1]]])).outputs
    for x in (torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]), torch.tensor([[[True, False]],
                                                                         [[False, True]]])):
        got = net.run(x).outputs
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_int_input_validation():
    net = build([h_layer()], input_kind="int", fmt=Format(in_bits=4))
    with raises("int input must fit signed 4 bits: values in [-9, 7] are outside [-8, 7]"):
        net.run(T([[[-9, 7]]]))
    net.run(T([[[-8, 7]]]))  # the bounds themselves are fine


def test_state_batch_must_match():
    net = build([h_layer()])
    with raises("state 'h.u' has shape (1, 2), expected (2, 2)"):
        net.run(torch.zeros(1, 2, 2, dtype=torch.int64), net.initial_state(1))


def test_state_keys_must_match():
    net = build([h_layer()])
    state = net.initial_state(2)
    del state["h.out"]
    with raises("state has keys ['h.u'], expected ['h.out', 'h.u']"):
        net.run(torch.zeros(1, 2, 2, dtype=torch.int64), state)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("v_reset", 1.5, "layer 'h': v_reset must be an integer, not 1.5"),
    ("spiking", 1, "layer 'h': spiking must be True or False, not 1"),
    ("size", True, "layer 'h': size must be a positive integer, not True"),
])
def test_lif_field_types(field, value, message):
    layer = h_layer()
    setattr(layer, field, value)
    with raises(message):
        build([layer])


def test_reference_input_validation():
    net = build([h_layer()])
    with raises("input step 1 has 3 values, expected 2"):
        run_reference(net, [[0, 1], [0, 1, 0]])
    with raises("input step 0: value 2 is not an integer in [0, 1]"):
        run_reference(net, [[0, 2]])
