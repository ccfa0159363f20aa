"""`ingress_cpus`: the CPU-list parser as a table, the config's error, and pinning a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from pydantic import ValidationError

from serving.config import ServeConfig
from serving.cpu_affinity import parse_cpu_list, pin_process


@pytest.mark.parametrize(("spec", "cpus"), [
    ("0", {0}), ("3", {3}), ("0,2", {0, 2}), ("0-3", {0, 1, 2, 3}), ("0-1,6", {0, 1, 6}), (" 1 , 2 ", {1, 2}),
    ("2-2", {2}), ("1,1", {1}),
])
def test_parse_cpu_list(spec: str, cpus: set[int]) -> None:
    assert parse_cpu_list(spec) == cpus


@pytest.mark.parametrize(("spec", "message"), [
    ("", "got ''"), ("a", "got 'a'"), ("0,", "got '0,'"), ("-1", "got '-1'"), ("1-", "got '1-'"),
    ("0-x", "got '0-x'"), ("3-1", "'3-1' runs backwards"), ("0;1", "got '0;1'"),
])
def test_parse_cpu_list_refuses_and_quotes(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_cpu_list(spec)


def test_the_config_quotes_a_bad_cpu_list() -> None:
    assert ServeConfig(ingress_cpus="0-1").ingress_cpus == "0-1"
    assert ServeConfig().ingress_cpus is None
    assert ServeConfig.model_validate({"ingress_cpus": 1}).ingress_cpus == "1"  # `ingress_cpus: 1` in YAML
    with pytest.raises(ValidationError, match=r"ingress_cpus\n.*got '0-1x'"):
        ServeConfig(ingress_cpus="0-1x")


CHILD = textwrap.dedent("""
    import json, os, sys, threading
    stop = threading.Event()
    for _ in range(3):
        threading.Thread(target=stop.wait, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.readline()  # pinned meanwhile
    late = threading.Thread(target=stop.wait, daemon=True)
    late.start()
    print(json.dumps({tid: sorted(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")}),
          flush=True)
    stop.set()
""")


def test_pin_process_pins_every_thread_and_threads_started_later() -> None:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("one CPU here: a pinned process looks like an unpinned one")
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        assert len(os.listdir(f"/proc/{child.pid}/task")) >= 4
        assert pin_process(frozenset({allowed[-1]}), child.pid) == {allowed[-1]}
        child.stdin.write("go\n")
        child.stdin.flush()
        threads = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait()
    assert len(threads) >= 5  # the main thread, three before the pin, one after
    assert all(cpus == [allowed[-1]] for cpus in threads.values()), threads


def test_pin_process_keeps_the_cpus_that_exist_and_refuses_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        allowed = frozenset(os.sched_getaffinity(0))
        assert pin_process(allowed | {4095}, child.pid) == allowed  # CPU 4095 exists nowhere
        with pytest.raises(ValueError, match=r"ingress_cpus: cannot keep process \d+ to CPUs \[4095\]"):
            pin_process(frozenset({4095}), child.pid)
    finally:
        child.kill()
        child.wait()
