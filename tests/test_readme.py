"""The README's Python example runs as written (on the simulated board) and says
what it claims: accuracy on the digits and bit-exactness with the golden model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from spikeforge.sim.verilator import missing_tools

README = Path(__file__).resolve().parents[1] / "README.md"
_missing = missing_tools()


@pytest.mark.skipif(bool(_missing), reason="the simulated board needs "
                    + ", ".join(_missing) if _missing else "")
def test_readme_python_example_runs_as_written(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert blocks, "the README has no python block"
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert scope["exact"] is True and scope["accuracy"] > 0.9
    assert "bit-exact with the golden model: True" in capsys.readouterr().out
