"""Keep a process to some CPUs: `ingress_cpus` and `model_cpus` keep the ingress and the model apart.

On a machine that runs the ingress and the model replicas side by side, every request the ingress
parses, routes or refuses takes CPU from whichever core it lands on. Under overload most requests
are refusals, and when they share the model's core the model serves less (BENCHMARKS.md, load
shedding: "an ingress on its own core"). Pinning the ingress to other CPUs (as nginx's
`worker_cpu_affinity` or a Kubernetes CPU set does) keeps that work off the model's cores;
`model_cpus` keeps the model replicas (and the Tritons they start, which inherit the mask) off the
ingress's.

`parse_cpu_list` is pure and tested as a table; `pin_process` is tested on a real process with
threads.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("distilserve.affinity")


def parse_cpu_list(spec: str) -> frozenset[int]:
    """A CPU list as `taskset -c` and /sys write it: '0', '0,2', '0-3', '0-1,6'. ValueError quoting
    `spec` for anything else (empty parts, a range that runs backwards, negative numbers)."""
    cpus: set[int] = set()
    for part in str(spec).split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"expected a CPU list such as '0', '0,2' or '0-3', got {spec!r}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"CPU range {part.strip()!r} runs backwards in {spec!r}")
        cpus.update(range(first, last + 1))
    return frozenset(cpus)


def pin_process(cpus: frozenset[int], pid: int = 0, setting: str = "ingress_cpus") -> frozenset[int]:
    """Pin every thread of process `pid` (0: this one) to `cpus`; threads it starts later inherit the
    mask of the thread that starts them. The kernel keeps only the CPUs the process's cpuset allows
    (a container's CPUs); none of them allowed is a ValueError naming `setting` and `cpus`. Child
    processes started later inherit the mask too. Returns the CPUs applied."""
    target = os.getpid() if pid == 0 else pid
    try:
        os.sched_setaffinity(target, cpus)
    except OSError as e:  # EINVAL: no CPU of `cpus` exists or is allowed here
        raise ValueError(f"{setting}: cannot keep process {target} to CPUs {sorted(cpus)}: {e.strerror}") from None
    got = frozenset(os.sched_getaffinity(target))
    if got != cpus:
        log.warning("%s %s: only %s of them are available here", setting, sorted(cpus), sorted(got))
    for tid in os.listdir(f"/proc/{target}/task"):
        try:
            os.sched_setaffinity(int(tid), got)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
    log.info("%s: pinned process %d to CPUs %s", setting, target, sorted(got))
    return got
