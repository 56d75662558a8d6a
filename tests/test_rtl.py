"""The generated Verilog: checked-in files are current, output is deterministic,
and Verilator's -Wall lint passes with only the documented waivers."""

from __future__ import annotations

from pathlib import Path

import pytest
from spikeforge.cli import main
from spikeforge.sim.rtl import LINT_WAIVERS, REFERENCE_CONFIGS, config_named, generate, lint
from spikeforge.sim.verilator import have_verilator

RTL = Path(__file__).resolve().parent.parent / "rtl"


@pytest.fixture(scope="module")
def generated():
    return {name: generate(cfg, name=f"npu_core_{name}") for name, cfg in
            REFERENCE_CONFIGS.items()}


@pytest.mark.parametrize("name", sorted(REFERENCE_CONFIGS))
def test_checked_in_rtl_is_current(name, generated):
    path = RTL / f"npu_core_{name}.v"
    assert path.exists(), f"{path} is missing: run `spikeforge rtl --out rtl`"
    assert path.read_text() == generated[name], \
        f"{path} is stale: run `spikeforge rtl --out rtl` and commit it"


def test_generation_is_deterministic(generated):
    text = generate(REFERENCE_CONFIGS["tiny"], name="npu_core_tiny")
    assert text == generated["tiny"]
    assert "/work" not in text and "/tmp" not in text  # no source paths


def test_rtl_has_no_files_besides_the_reference_configs():
    assert sorted(p.name for p in RTL.glob("*.v")) == \
        sorted(f"npu_core_{n}.v" for n in REFERENCE_CONFIGS)


@pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")
@pytest.mark.parametrize("name", sorted(REFERENCE_CONFIGS))
def test_verilator_lint_passes(name):
    result = lint(RTL / f"npu_core_{name}.v")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.skipif(not have_verilator(), reason="Verilator is not installed")
def test_lint_catches_what_is_not_waived(tmp_path):
    """A latch (not waived) fails the lint: the waivers are by rule, not wholesale."""
    assert "LATCH" not in LINT_WAIVERS
    bad = tmp_path / "latch.v"
    bad.write_text("module latch(input en, input d, output reg q);\n"
                   "  always @* if (en) q = d;\nendmodule\n")
    result = lint(bad)
    assert result.returncode != 0 and "LATCH" in result.stderr


def test_cli_rtl_writes_the_named_config(tmp_path, capsys):
    assert main(["rtl", "--config", "tiny", "--out", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"configs": ["tiny"]' in out
    assert (tmp_path / "npu_core_tiny.v").read_text() == (RTL / "npu_core_tiny.v").read_text()
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_config_is_refused():
    with pytest.raises(ValueError, match="unknown configuration 'huge'; choose one of"):
        config_named("huge")
