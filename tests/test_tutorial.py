"""docs/tutorial.md runs as written: its Python blocks, in order, in one session
(snnTorch training, conversion, comparison, the simulated board, the fit), and
what it shows holds (accuracy within half a point, bit-exact on the board)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from spikeforge.sim.verilator import missing_tools

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
_missing = missing_tools()


@pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                    + ", ".join(_missing) if _missing else "")
def test_tutorial_runs_as_written(tmp_path, monkeypatch):
    pytest.importorskip("snntorch")
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), re.DOTALL)
    assert len(blocks) == 5
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/tutorial.md (block {i + 1})", "exec"), scope)  # noqa: S102
    acc = scope["report"]["accuracy"]
    assert acc["float"] == acc["snntorch"] and abs(acc["integer"] - acc["snntorch"]) <= 0.005
    assert scope["exact"] is True
    fits = {e["board"]: e["fits"] for e in scope["conv"].fit()}
    assert fits["ulx3s-85f"] and not fits["icebreaker"]
    assert (tmp_path / "snn_digits.safetensors").is_file()
    # The command line of step 5 on the files it wrote (the golden model).
    from spikeforge.cli import main

    assert main(["eval", "snn_digits.safetensors", "--data", "digits_test.npz",
                 "--json"]) == 0
