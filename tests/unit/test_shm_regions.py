"""Which of the Python backend's /dev/shm regions a process maps: serving/triton/reaper.py for a
server's group (its owner and its watchdog), and model.py for its own stub (which imports nothing of
distilserve); both readings are checked on the same texts."""

from __future__ import annotations

import pytest

from distill import export
from serving.triton.reaper import shm_regions
from tests.helpers import TEMPLATE

PARSERS = {"reaper": shm_regions, "model.py": export.load_model_py(TEMPLATE).mapped_regions}

REGION = "/dev/shm/triton_python_backend_shm_region_0f3c"


@pytest.mark.parametrize("parser", PARSERS)
def test_regions_are_read_from_the_last_field_of_maps(parser: str) -> None:
    maps = "\n".join([
        f"7f00a0000000-7f00a0100000 rw-s 00000000 00:1a 1234                       {REGION}",
        "7f00b0000000-7f00b0021000 r-xp 00000000 08:01 99   /usr/lib/x86_64-linux-gnu/libc.so.6",
        "7f00c0000000-7f00c0100000 rw-s 00000000 00:1a 77   /dev/shm/triton_python_backend_shm_region_dead (deleted)",
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
        "7f00d0000000-7f00d0001000 rw-p 00000000 00:00 0",  # anonymous: no path
        f"7f00e0000000-7f00e0100000 rw-s 00100000 00:1a 1234                       {REGION}",  # mapped twice
        "7f00f0000000-7f00f0001000 rw-s 00000000 00:1a 88   /dev/shm/PostgreSQL.1954180356",
    ])
    assert PARSERS[parser](maps) == {REGION}


@pytest.mark.parametrize("parser", PARSERS)
def test_no_maps_no_regions(parser: str) -> None:
    assert PARSERS[parser]("") == set()
