"""Mutation testing of the gateware: does the default suite catch a wrong circuit?

Each mutant of :data:`mutants.MUTANTS` is one small fault (an operator, a
constant, a width off by one, a saturation or reset value, a pipeline enable,
a router flag, a counter increment, a CRC tap, ...) put into a scratch copy of
the project, one at a time; the tests of the mutant's suite (files of the
default suite, fastest first) then run on that copy and stop at the first
failure.  A mutant is *killed* if they fail, *survives* if they pass; an
*equivalent* mutant (one that cannot change what the circuit computes, with
the reason) is listed but not run.  The score is killed / (run).

    python tests/mutate.py                     # list the mutants
    python tests/mutate.py --all               # run every one (hours)
    python tests/mutate.py --sample 3 --seed 7 # three, drawn with seed 7
    python tests/mutate.py lane.subtract_high lane.clamp_low   # these
        [--json FILE] [--scratch DIR] [--timeout SECONDS]

The scratch copy (``build/mutants/`` by default; ``--scratch``) holds the
project's folders and a package tree of links to them, put first on
``PYTHONPATH`` so the tests import the mutated copy; its Verilator builds are
kept between mutants and runs (a build is redone only when its Verilog
changes).  ``tests/test_mutants.py`` runs a small sample of the mutants in the
default suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import MUTANTS, SUITES, Mutant  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("host", "golden", "gateware", "boards", "tests")
PACKAGE = {"golden": "golden", "gateware": "gateware", "boards": "boards"}
"""Subpackages of ``spikeforge`` (``host/`` is the package root)."""


@dataclass
class Outcome:
    """What one mutant's run gave: ``status`` killed / survived / equivalent /
    error (the suite could not run: no tests, a usage error), the test that
    killed it, the seconds taken and the tail of the output."""

    id: str
    status: str
    killed_by: str | None = None
    seconds: float = 0.0
    detail: str = ""


def apply(mutant: Mutant, text: str) -> str:
    """``text`` with the mutant's one change; ValueError unless ``find`` occurs exactly
    once (the mutant no longer matches the source)."""
    count = text.count(mutant.find)
    if count != 1:
        raise ValueError(f"mutant {mutant.id}: {mutant.find!r} occurs {count} times in "
                         f"{mutant.path}, not once")
    return text.replace(mutant.find, mutant.replace)


class Scratch:
    """A scratch copy of the project at ``root`` whose package tree the tests import."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        for folder in FOLDERS:
            shutil.rmtree(self.root / folder, ignore_errors=True)
            shutil.copytree(ROOT / folder, self.root / folder,
                            ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(ROOT / "pyproject.toml", self.root / "pyproject.toml")
        package = self.root / "src" / "spikeforge"
        shutil.rmtree(self.root / "src", ignore_errors=True)
        package.mkdir(parents=True)
        for entry in (self.root / "host").iterdir():
            (package / entry.name).symlink_to(entry)
        for name, folder in PACKAGE.items():
            (package / name).symlink_to(self.root / folder)

    def check(self) -> None:
        """Raise RuntimeError unless every suite's files collect on the unmutated copy
        (a copy broken for another reason would make every mutant look killed)."""
        files = sorted({f for fs in SUITES.values() for f in fs})
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                               "-p", "no:cacheprovider", *files], cwd=self.root,
                              env=self.env(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the scratch copy in {self.root} does not collect:\n"
                               f"{(proc.stdout + proc.stderr)[-2000:]}")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(self.root / "src"), *filter(None, [env.get("PYTHONPATH")])])
        env["SPIKEFORGE_BUILD"] = str(self.root / "build")
        env.pop("SPIKEFORGE_SEEDS", None)
        env.pop("SPIKEFORGE_WAVES", None)
        return env

    def run(self, mutant: Mutant, *, timeout: float) -> Outcome:
        """Apply ``mutant``, run its suite, restore the file."""
        if mutant.equivalent:
            return Outcome(mutant.id, "equivalent", detail=mutant.equivalent)
        path = self.root / mutant.path
        original = path.read_text()
        path.write_text(apply(mutant, original))
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider",
               *SUITES[mutant.suite]]
        try:
            proc = subprocess.run(cmd, cwd=self.root, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return Outcome(mutant.id, "killed", killed_by=f"timeout ({timeout:.0f} s)",
                           seconds=time.perf_counter() - t0)
        finally:
            path.write_text(original)
        seconds = time.perf_counter() - t0
        tail = (proc.stdout + proc.stderr)[-3000:]
        if proc.returncode == 0:
            return Outcome(mutant.id, "survived", seconds=seconds, detail=tail[-500:])
        # Killed: a test failed (an error at collection, e.g. a mutant that cannot be
        # imported, counts too).  Anything else, such as a broken environment, is an
        # error, not a kill.
        failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", proc.stdout, re.MULTILINE)
        if proc.returncode in (1, 2) and failed:
            return Outcome(mutant.id, "killed", killed_by=failed[0], seconds=seconds)
        return Outcome(mutant.id, "error", seconds=seconds,
                       detail=f"pytest exit code {proc.returncode}\n{tail}")


def sample(count: int, seed) -> list[Mutant]:
    """``count`` mutants (not equivalent) drawn with ``random.Random(seed)``."""
    live = [m for m in MUTANTS if not m.equivalent]
    return random.Random(seed).sample(live, min(count, len(live)))


def score(outcomes: list[Outcome]) -> dict:
    run = [o for o in outcomes if o.status in ("killed", "survived")]
    killed = sum(o.status == "killed" for o in run)
    return {"run": len(run), "killed": killed,
            "survived": [o.id for o in outcomes if o.status == "survived"],
            "errors": [o.id for o in outcomes if o.status == "error"],
            "equivalent": [o.id for o in outcomes if o.status == "equivalent"],
            "score": killed / len(run) if run else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ids", nargs="*", help="mutants to run (default: list them)")
    parser.add_argument("--all", action="store_true", help="run every mutant")
    parser.add_argument("--sample", type=int, help="run this many, drawn at random")
    parser.add_argument("--seed", default="0", help="the draw's seed (with --sample)")
    parser.add_argument("--json", type=Path, help="write the outcomes and score here")
    parser.add_argument("--scratch", type=Path, default=ROOT / "build" / "mutants",
                        help="the scratch copy (default: build/mutants)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a mutant's run counts as a hang (killed)")
    args = parser.parse_args(argv)
    by_id = {m.id: m for m in MUTANTS}
    unknown = [i for i in args.ids if i not in by_id]
    if unknown:
        parser.error(f"no mutant named {', '.join(unknown)} (run without arguments for the list)")
    if args.all:
        chosen = list(MUTANTS)
    elif args.sample:
        chosen = sample(args.sample, args.seed)
    elif args.ids:
        chosen = [by_id[i] for i in args.ids]
    else:
        for m in MUTANTS:
            note = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
            print(f"{m.id:32} {m.suite:5} {m.path}: {m.what}{note}")
        return 0
    args.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Scratch(args.scratch)
    scratch.check()
    outcomes = []
    for i, mutant in enumerate(chosen, 1):
        outcome = scratch.run(mutant, timeout=args.timeout)
        outcomes.append(outcome)
        how = f" by {outcome.killed_by}" if outcome.killed_by else ""
        print(f"[{i}/{len(chosen)}] {mutant.id}: {outcome.status}{how} "
              f"({outcome.seconds:.0f} s)", flush=True)
        if outcome.status in ("survived", "error"):
            print(outcome.detail, flush=True)
    result = score(outcomes)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"outcomes": [asdict(o) for o in outcomes],
                                         **result}, indent=1))
    return 0 if not result["survived"] and not result["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
