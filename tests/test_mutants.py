"""The mutation tool (``tests/mutate.py``): every mutant still matches the source,
and a small sample of them is killed by the default suite on every run (the full
run: ``python tests/mutate.py --all``).

The sample: the two faults that once passed every suite (a subtract reset of a
neuron saturated high giving ``~theta``, the low saturation clamping to
``u_min + 1``) and one more drawn at random, seeded by the checked-out commit
(``SPIKEFORGE_MUTANT_SEED`` overrides it), so each commit tries another.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest
from mutants import MUTANTS, SUITES
from mutate import ROOT, Outcome, Scratch, apply, sample, score

ALWAYS = ("lane.subtract_high", "lane.clamp_low")


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.id)
def test_every_mutant_matches_the_source_once(mutant):
    text = (ROOT / mutant.path).read_text()
    assert apply(mutant, text) != text
    assert mutant.suite in SUITES and mutant.what
    assert mutant.equivalent is None or len(mutant.equivalent) > 20  # a reason, not a flag


def test_mutant_ids_are_unique_and_every_suite_file_exists():
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    assert all((ROOT / f).is_file() for files in SUITES.values() for f in files)
    assert set(ALWAYS) <= set(ids)


def test_apply_refuses_a_mutant_that_no_longer_matches():
    mutant = next(m for m in MUTANTS if m.id == "lane.clamp_low")
    with pytest.raises(ValueError, match="occurs 0 times in gateware/lane.py, not once"):
        apply(mutant, "nothing here")
    with pytest.raises(ValueError, match="occurs 2 times"):
        apply(mutant, mutant.find * 2)


def test_score_counts_only_the_mutants_run():
    outcomes = [Outcome("a", "killed"), Outcome("b", "survived"), Outcome("c", "equivalent"),
                Outcome("d", "killed")]
    result = score(outcomes)
    assert result["run"] == 3 and result["killed"] == 2 and result["survived"] == ["b"]
    assert result["equivalent"] == ["c"] and result["score"] == pytest.approx(2 / 3)


def _seed() -> str:
    if os.environ.get("SPIKEFORGE_MUTANT_SEED"):
        return os.environ["SPIKEFORGE_MUTANT_SEED"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(random.random())


def _sample() -> list:
    chosen = [m for m in MUTANTS if m.id in ALWAYS]
    rest = [m for m in sample(len(MUTANTS), _seed()) if m.id not in ALWAYS]
    return chosen + rest[:1]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Scratch:
    copy = Scratch(Path(tmp_path_factory.mktemp("mutants")))
    copy.check()  # the unmutated copy collects: a failure below is the mutant's
    return copy


@pytest.mark.parametrize("index", range(len(ALWAYS) + 1))
def test_sampled_mutant_is_killed(index, scratch):
    mutant = _sample()[index]
    outcome = scratch.run(mutant, timeout=1800)
    print(f"{mutant.id}: {outcome.status} by {outcome.killed_by} in {outcome.seconds:.0f} s")
    assert outcome.status == "killed", (f"mutant {mutant.id} ({mutant.what}) survived the "
                                        f"default suite:\n{outcome.detail}")
