"""The ``spikeforge`` command, run in-process through ``spikeforge.cli.main``.

Exit codes (``host/cli.py``): 0 ok, 2 usage (argparse's own ``SystemExit(2)``
for bad arguments, or a returned 2 for values rejected after parsing), 3 bad
model file.  ``--json`` prints exactly one JSON object on stdout.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from modelkit import rewrite
from netgen import small_model_file
from sklearn.datasets import load_digits
from spikeforge import __version__
from spikeforge.boards.defs import BOARDS
from spikeforge.cli import main
from spikeforge.golden.modelfile import load_model, save_model
from spikeforge.golden.quantize import to_integer
from spikeforge.golden.tasks import digits
from spikeforge.golden.train import build_twin, config_for


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # On a loaded 2-core machine torch's two spinning OpenMP threads slow these tiny
    # runs down ~100x; results do not depend on the thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def single_json(text: str) -> dict:
    """``text`` must be exactly one JSON object (one line) and nothing else."""
    assert text.endswith("\n") and text.count("\n") == 1, repr(text[:300])
    obj = json.loads(text)
    assert isinstance(obj, dict)
    return obj


@pytest.fixture
def model_file(tmp_path) -> Path:
    """A valid digits model file (an untrained, quantized twin: no training needed)."""
    return small_model_file(tmp_path / "small.safetensors", hidden=8, timesteps=2)


# ---------------------------------------------------------------- bad files
def test_eval_missing_file_exits_3_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "model.safetensors"
    assert main(["eval", str(missing)]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert str(missing) in err and "no such model file" in err
    assert err.startswith("spikeforge: error:")


def test_eval_directory_exits_3(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 3
    assert "is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated", "flipped"])
def test_eval_corrupt_file_exits_3(model_file, damage, capsys):
    data = model_file.read_bytes()
    if damage == "garbage":
        data = b"this is not a safetensors file at all" * 10
    elif damage == "empty":
        data = b""
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:  # one bit of the last tensor byte: the framing is fine, the digest is not
        data = data[:-1] + bytes([data[-1] ^ 1])
    model_file.write_bytes(data)
    assert main(["eval", str(model_file), "--json"]) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert str(model_file) in err
    if damage == "flipped":
        assert "digest mismatch" in err


def test_eval_valid_file_works(model_file, capsys):
    assert main(["eval", str(model_file)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("digits: accuracy ") and "T=2" in out


@pytest.mark.parametrize("meta", [{}, {"task": "cifar"}, {"task": "digits"}])
def test_eval_file_without_task_metadata_exits_3(tmp_path, meta, capsys):
    torch.manual_seed(0)
    net = to_integer(build_twin(config_for("digits", hidden=4)))
    path = tmp_path / "foreign.safetensors"
    save_model(path, net, meta)  # a valid model file whose meta describes no task
    assert main(["eval", str(path)]) == 3
    err = capsys.readouterr().err
    assert str(path) in err and "metadata" in err


# ------------------------------------------------------------- bad options
@pytest.mark.parametrize("argv, message", [
    ([], "required"),
    (["frobnicate"], "invalid choice"),
    (["eval"], "required"),
    (["eval", "m.safetensors", "--split", "dev"], "invalid choice: 'dev'"),
    (["train", "digits"], "--out"),
    (["train", "cifar", "--out", "OUT"], "invalid choice: 'cifar'"),
    (["train", "digits", "--out", "OUT", "--hidden", "0"], "'0' must be at least 1"),
    (["train", "digits", "--out", "OUT", "-T", "x"], "'x' is not an integer"),
    (["train", "digits", "--out", "OUT", "--epochs", "-3"], "'-3' must be at least 1"),
    (["train", "digits", "--out", "OUT", "--surrogate", "relu"], "invalid choice: 'relu'"),
    (["train", "digits", "--out", "OUT", "--encoding", "pcm"], "invalid choice: 'pcm'"),
    (["train", "digits", "--out", "OUT", "--w-bits", "eight"], "invalid int value"),
    (["train", "recall", "--out", "OUT", "--mode", "gated"], "invalid choice: 'gated'"),
    (["experiment", "nosuch"], "invalid choice: 'nosuch'"),
    (["experiment", "timesteps", "--timesteps", "1,x"], "not a comma-separated list"),
    (["experiment", "timesteps", "--timesteps", "4,0"], "must list positive integers"),
    (["experiment", "recall-length", "--lengths", ","], "must list positive integers"),
    (["bench", "--fast"], "unrecognized arguments: --fast"),
    (["build", "--board", "icebreaker", "--seed", "0"], "'0' must be at least 1"),
    (["build", "--board", "icebreaker", "--seed", "x"], "'x' is not an integer"),
    (["run", "M", "--device", "sim://", "--timeout", "inf"], "'inf' must be a positive number"),
])
def test_bad_options_are_argparse_usage_errors(argv, message, tmp_path, capsys):
    out_file = tmp_path / "m.safetensors"
    argv = [str(out_file) if a == "OUT" else a for a in argv]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err, err
    assert not out_file.exists()


@pytest.mark.parametrize("extra, message", [
    (["--w-bits", "1"], "w_bits must be in 2..16"),
    (["-T", "2000"], "timesteps must be in 1..1024"),
])
def test_bad_values_after_parsing_return_2(extra, message, tmp_path, capsys):
    out_file = tmp_path / "m.safetensors"
    assert main(["train", "digits", "--out", str(out_file), *extra]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err
    assert not out_file.exists()


def test_train_into_missing_directory_is_a_usage_error(tmp_path, capsys):
    out_file = tmp_path / "no" / "such" / "m.safetensors"
    assert main(["train", "digits", "--out", str(out_file), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and str(out_file) in err


@pytest.mark.parametrize("argv", [
    ["train", "digits", "--out", "DIR", "--epochs", "1"],
    ["import-nir", "NIR", "--out", "DIR"],
    ["export-nir", "MODEL", "DIR"],
])
def test_an_output_path_that_is_a_directory_is_refused_first(argv, tmp_path, capsys):
    model = small_model_file(tmp_path / "m.safetensors")
    names = {"DIR": str(tmp_path), "NIR": str(tmp_path / "absent.nir"), "MODEL": str(model)}
    assert main([names.get(a, a) for a in argv]) == 2
    assert capsys.readouterr().err.endswith(f"{tmp_path}: is a directory; give a file name\n")


# ----------------------------------------------------------- train + eval
def test_train_then_eval_json(tmp_path, capsys):
    out_file = tmp_path / "digits.safetensors"
    code = main(["train", "digits", "--out", str(out_file), "--epochs", "1", "--qat-epochs", "0",
                 "--hidden", "16", "-T", "2", "--json"])
    assert code == 0
    trained = single_json(capsys.readouterr().out)
    assert out_file.is_file()
    assert trained["model"] == str(out_file)
    assert trained["task"] == "digits" and trained["timesteps"] == 2 and trained["w_bits"] == 8
    assert not any(k.endswith("loss") for k in trained["training"])
    assert trained["training"]["agreement_qat_twin_vs_int"] == 1.0

    assert main(["eval", str(out_file), "--json"]) == 0
    report = single_json(capsys.readouterr().out)
    assert {"accuracy", "timesteps", "w_bits", "synops_per_sample"} <= set(report)
    assert report["accuracy"] == trained["accuracy"]
    assert report["synops_per_sample"] == trained["synops_per_sample"]
    assert report["timesteps"] == 2 and report["w_bits"] == 8
    assert 0.1 < report["accuracy"] <= 1.0

    # the test split size, from the documented stratified 20 % split
    counts = torch.bincount(torch.from_numpy(load_digits().target))
    n_test = sum(round(0.2 * int(c)) for c in counts)
    assert report["samples"] == n_test

    # accuracy and synaptic ops recomputed independently from the saved network's trace
    net, meta = load_model(out_file)
    assert meta["hidden"] == 16 and meta["qat_epochs"] == 0 and meta["epochs"] == 1
    data = digits("test")
    x = data.encode("rate", 2, seed=meta["encoding_seed"])
    trace = net.run(x)
    membrane = trace.outputs["out"][-1]
    pred = membrane.argmax(dim=1)
    assert float((pred == torch.from_numpy(data.y)).double().mean()) == report["accuracy"]
    hidden = trace.spikes["hidden"]
    events = int(x.sum()) * 16 + int(hidden.sum()) * 10  # event x fan-out per edge
    assert report["synops_per_sample"] == pytest.approx(events / len(data), rel=1e-12)

    # the train split and the human-readable form
    assert main(["eval", str(out_file), "--split", "train", "--json"]) == 0
    assert single_json(capsys.readouterr().out)["samples"] == 1797 - n_test
    assert main(["eval", str(out_file)]) == 0
    text = capsys.readouterr().out
    assert f"accuracy {report['accuracy']:.4f}" in text and "T=2, w_bits=8" in text


# ------------------------------------------------------------------- bench
def test_bench_quick_json(capsys):
    assert main(["bench", "--quick", "--no-rtl", "--json"]) == 0
    result = single_json(capsys.readouterr().out)
    golden = result["golden"]
    assert golden["synops_per_second"] > 0
    assert golden["batch"] == 256 and golden["timesteps"] == 8
    for key, field, fixed, fixed_value in (("scaling_batch", "batch", "timesteps", 8),
                                           ("scaling_timesteps", "timesteps", "batch", 256)):
        points = golden[key]
        assert isinstance(points, list) and len(points) >= 2
        swept = [p[field] for p in points]
        assert swept == sorted(set(swept)), swept
        for p in points:
            assert p[fixed] == fixed_value
            assert p["seconds"] > 0 and p["synops"] > 0 and p["synops_per_second"] > 0
            assert p["synops_per_second"] == pytest.approx(p["synops"] / p["seconds"])
            assert p["sample_steps_per_second"] == pytest.approx(
                p["batch"] * p["timesteps"] / p["seconds"])
    assert result["machine"]["cpus"] >= 1
    # The language model per token: the core's clocks on the simulated board's
    # configuration for it and on each board with an SSM unit that holds it, energy
    # beside a KV cache.
    seq = result["sequence"]
    with_ssm = {name for name, b in BOARDS.items() if b.config.has_ssm}
    assert set(seq["clocks"]) == {"sim (charlm)", *with_ssm} and with_ssm
    for name in with_ssm:
        c = seq["clocks"][name]
        assert c["us_per_token"] == pytest.approx(c["clocks_per_token"]
                                                  / BOARDS[name].target_mhz)
    assert [r["context"] for r in seq["energy"]["contexts"]] == [64, 256, 1024]
    assert seq["energy"]["estimate"] is True


# ----------------------------------------------------------------- version
def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"spikeforge {__version__}"


def test_installed_console_script_version():
    script = Path(sys.executable).with_name("spikeforge")
    exe = str(script) if script.exists() else shutil.which("spikeforge")
    assert exe, "the 'spikeforge' console script is not installed (pip install -e .)"
    done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"spikeforge {__version__}"


@pytest.mark.parametrize(("field", "value", "problem"), [
    ("timesteps", 10_000_000, "metadata timesteps=10000000 is not an integer in 1..1024"),
    ("timesteps", -1, "metadata timesteps=-1 is not an integer in 1..1024"),
    ("timesteps", "8", "metadata timesteps='8' is not an integer in 1..1024"),
    ("encoding", "pcm", "metadata encoding='pcm' is not one of ('rate', 'direct', 'delta')"),
    ("readout", None, "metadata readout=None is not one of ('last', 'sum', 'max')"),
])
def test_task_metadata_out_of_range_exits_3(tmp_path, capsys, field, value, problem):
    path = small_model_file(tmp_path / "m.safetensors")
    rewrite(path, edit_doc=lambda doc: doc["meta"].update({field: value}), redigest=True)
    assert main(["eval", str(path)]) == 3
    assert capsys.readouterr().err == f"spikeforge: error: {path}: {problem}\n"


def test_output_into_a_closed_pipe_is_no_error():
    """``spikeforge boards --json | head -c 10``: the reader goes away; the command
    ends quietly (no traceback), exit 0."""
    script = Path(sys.executable).with_name("spikeforge")
    exe = str(script) if script.exists() else shutil.which("spikeforge")
    proc = subprocess.Popen([exe, "boards", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # (before the command has written everything)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err
