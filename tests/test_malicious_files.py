"""A catalogue of malicious model files and NIR files (issue #32): each is refused by
the ``spikeforge`` command with exit code 3 and one line on stderr that names the
problem, writes nothing, and stays within 10 s and 1 GB of memory.

The cases are in ``tests/malicious_models.py`` and ``tests/malicious_nir.py``: each
a small function that writes its bad file(s) into a folder of its own and returns the
command line that reads them and a fragment the one error line must hold.  The
command lines run through ``tests/clirunner.py``: each in a process of its own, under
an address-space cap and a 10 s kill, which reports the exit code, the wall time and
the peak resident memory.  A few run the installed console script (a fresh
interpreter each, ~2 s); the rest call ``spikeforge.cli.main`` in a child forked from
one interpreter that has imported the CLI already (milliseconds each), with the
console script's exit-code path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import malicious_models
import malicious_nir
import pytest

TIMEOUT = 10.0
"""Seconds a command may take (the runner kills it after that)."""
PEAK_BYTES = 10**9
"""The most memory a command may hold (peak resident set)."""
RUNNER = Path(__file__).with_name("clirunner.py")

CASES = {**malicious_models.CASES, **malicious_nir.CASES}
EXEC = {"model-missing", "model-fifo", "model-task-timesteps-huge", "nir-not-hdf5",
        "nir-hollow-30000x30000"}
"""The cases that run the installed console script itself."""


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """Write every case's files and run every command line once."""
    root = tmp_path_factory.mktemp("malicious")
    script = Path(sys.executable).with_name("spikeforge")
    jobs, expected = [], {}
    for name, build in CASES.items():
        d = root / name
        d.mkdir()
        argv, fragment = build(d)
        before = sorted(os.listdir(d))
        expected[name] = (argv, fragment, d, before)
        jobs.append(_job(name, argv, d, exec_script=script if name in EXEC else None))
    # The peak memory of a forked command leaves out the library pages the parent
    # holds and the child never touches; the same missing-file command in both modes
    # measures that difference, which is added to every forked command's peak.
    for mode in ("exec", "fork"):
        d = root / f"_baseline-{mode}"
        d.mkdir()
        argv = malicious_models.export(d / "none.safetensors")
        jobs.append(_job(f"_baseline-{mode}", argv, d,
                         exec_script=script if mode == "exec" else None))
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a loaded 2-core machine
    subprocess.run([sys.executable, str(RUNNER), str(root / "jobs.json"),
                    str(root / "results.jsonl"), "--timeout", str(TIMEOUT)],
                   check=True, timeout=60 + 2 * TIMEOUT * len(jobs), env=env)
    done = {}
    for line in (root / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        done[r["name"]] = r
    unseen = (done["_baseline-exec"]["peak_bytes"] - done["_baseline-fork"]["peak_bytes"])
    out = {}
    for name, (argv, fragment, d, before) in expected.items():
        r = done[name]
        r["peak_bytes"] += 0 if name in EXEC else max(0, unseen)
        r.update(argv=argv, fragment=fragment, before=before,
                 after=sorted(os.listdir(d)),
                 out=Path(d / f"{name}.stdout").read_text(errors="replace"),
                 err=Path(d / f"{name}.stderr").read_text(errors="replace"))
        r["after"] = [n for n in r["after"] if not n.startswith(f"{name}.std")]
        out[name] = r
    return out


def _job(name: str, argv: list[str], d: Path, *, exec_script: Path | None) -> dict:
    return {"name": name, "mode": "exec" if exec_script else "fork",
            "argv": [str(exec_script), *argv] if exec_script else argv,
            "stdout": str(d / f"{name}.stdout"), "stderr": str(d / f"{name}.stderr")}


def test_the_catalogue_has_at_least_50_cases():
    assert len(CASES) >= 50
    assert sum(n.startswith("model-") for n in CASES) >= 20
    assert sum(n.startswith("nir-") for n in CASES) >= 20
    assert set(CASES) >= EXEC


@pytest.mark.parametrize("name", list(CASES))
def test_refused_in_one_line_with_exit_3_within_bounds(results, name):
    r = results[name]
    detail = f"{r['argv']}: exit {r['code']}, {r['seconds']:.1f} s, " \
             f"{r['peak_bytes'] / 1e6:.0f} MB\n{r['err'][-3000:]}"
    assert not r["timed_out"], f"killed after {TIMEOUT} s: {detail}"
    assert r["code"] == 3, detail
    assert r["err"].startswith("spikeforge: error: ") and r["err"].endswith("\n") \
        and r["err"].count("\n") == 1, detail
    assert r["fragment"] in r["err"], f"expected {r['fragment']!r} in: {detail}"
    assert r["out"] == "", detail
    assert r["after"] == r["before"], f"written: {set(r['after']) - set(r['before'])}"
    assert r["seconds"] < TIMEOUT, detail
    assert r["peak_bytes"] < PEAK_BYTES, detail
