"""Run ``spikeforge`` command lines under hard bounds, each in a process of its own,
and report per command line its exit code, wall time and peak memory (the largest
resident set, from ``wait4``).

``python tests/clirunner.py JOBS.json RESULTS.jsonl``: ``JOBS.json`` is a list of
``{"name", "argv", "stdout", "stderr", "mode"}``; one JSON line per job goes to
``RESULTS.jsonl`` as soon as it ends (so a runner that dies still says how far it
got).  Each job runs in a child process whose address space is capped
(``RLIMIT_AS``: an allocation beyond it fails at once instead of exhausting the
machine) and which is killed after ``--timeout`` seconds:

* ``"exec"``: the child execs the installed console script (the real CLI, a fresh
  interpreter that imports torch: ~2 s each).  These run first, from this small
  process, so their peak memory is their own.
* ``"fork"``: the child is forked from this process after it imported the CLI and
  everything its commands import, and calls ``spikeforge.cli.main(argv)`` the way
  the console script does (``sys.exit(main())``: an uncaught exception prints its
  traceback and exits 1; ``SystemExit`` exits with its code), so a job costs
  milliseconds instead of an interpreter start.  The child's peak memory includes
  what those imports hold, as a real CLI process's does.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time

DEFAULT_TIMEOUT = 10.0
DEFAULT_ADDRESS_SPACE = 2 << 30
"""The child's address-space cap: imported torch, numpy and h5py map ~0.8 GB of
libraries, so 2 GiB leaves ~1 GiB for anything the command allocates."""


def _redirect(job: dict) -> None:
    for fd, key in ((1, "stdout"), (2, "stderr")):
        target = os.open(job[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)


def _exit_code(code) -> int:
    """What the interpreter exits with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _child(job: dict, address_space: int) -> None:
    """In the forked child: never returns."""
    code = 1
    try:
        _redirect(job)
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
        if job["mode"] == "exec":
            os.execv(job["argv"][0], job["argv"])
        from spikeforge.cli import main

        try:
            code = _exit_code(main(job["argv"]))
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run_job(job: dict, *, timeout: float, address_space: int) -> dict:
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _child(job, address_space)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            timed_out = True
            break
        time.sleep(0.002)
    return {"name": job["name"], "code": os.waitstatus_to_exitcode(status),
            "seconds": time.monotonic() - start, "timed_out": timed_out,
            "peak_bytes": usage.ru_maxrss * 1024}


def _preimport() -> None:
    """Everything the commands import lazily, so that a forked job does not pay for it."""
    import spikeforge.cli
    import spikeforge.commands  # noqa: F401
    import spikeforge.golden.nir  # noqa: F401
    import spikeforge.golden.train  # noqa: F401

    spikeforge.cli.build_parser()


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("jobs")
    parser.add_argument("results")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--address-space", type=int, default=DEFAULT_ADDRESS_SPACE)
    args = parser.parse_args(argv)
    with open(args.jobs) as f:
        jobs = json.load(f)
    jobs.sort(key=lambda job: job["mode"] != "exec")  # exec jobs before the imports
    with open(args.results, "w") as out:
        imported = False
        for job in jobs:
            if job["mode"] == "fork" and not imported:
                _preimport()
                imported = True
            result = run_job(job, timeout=args.timeout, address_space=args.address_space)
            out.write(json.dumps(result) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
