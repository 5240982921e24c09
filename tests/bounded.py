"""Run a hostile-input case in a child process with a memory cap and a deadline.

Attack tests assert that a small file is loaded or refused in bounded time and memory. Run
inside the test process, a regression would take the machine down (or hang the suite);
in a forked child whose address space is capped, it fails the one test instead.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """How the call ended: ``kind`` is "returned", "raised" or "timeout"."""

    kind: str
    error_type: str | None  # the exception's class name when kind == "raised"
    message: str
    seconds: float  # wall time inside the child (the deadline's for a timeout)


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _child(conn, extra_bytes: int, fn, args) -> None:
    # The cap counts what the child already maps (the test process's libraries), plus the budget.
    limit = _vm_bytes() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = time.perf_counter()
    try:
        value = fn(*args)
        outcome = Outcome("returned", None, repr(type(value).__name__), time.perf_counter() - start)
    except BaseException as e:  # noqa: BLE001 - the point is to report whatever happened
        outcome = Outcome("raised", type(e).__name__, str(e)[:500], time.perf_counter() - start)
    conn.send(outcome)
    conn.close()


def run_bounded(fn, *args, seconds: float = 30.0, memory_mb: int = 512) -> Outcome:
    """Call ``fn(*args)`` in a forked child allowed ``memory_mb`` MB more address space and ``seconds``.

    A child that runs past the deadline is killed and reported as a timeout; one that runs
    out of its memory budget reports the MemoryError (or dies, reported as raised "killed").
    """
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, memory_mb * 1024 * 1024, fn, args), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(seconds):
            try:
                return parent.recv()
            except EOFError:
                pass
            proc.join(5)
            return Outcome("raised", "killed", f"child died with exit code {proc.exitcode}", seconds)
        return Outcome("timeout", None, f"still running after {seconds} s", seconds)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
