"""bench_batch's raw model runs with the options its config.pbtxt gives the served replicas."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from distill import export
from loadtests.bench_batch import served_options
from tests.helpers import TEMPLATE

MODEL_PY = export.load_model_py(TEMPLATE)
PARAM = 'parameters: {{\n  key: "LENGTH_CHUNK_TOKENS"\n  value: {{ string_value: "{}" }}\n}}\n'


@pytest.mark.parametrize("param, expected", [("auto", None), ("off", 0), ("48", 48), (None, None)])
def test_the_raw_model_takes_length_chunk_tokens_from_the_config(param: str | None, expected: int | None,
                                                                 tmp_path: Path) -> None:
    model_dir = tmp_path / "sentiment"
    shutil.copytree(TEMPLATE, model_dir, ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    text = (model_dir / "config.pbtxt").read_text()
    start = text.index("parameters: {\n  key: \"LENGTH_CHUNK_TOKENS\"")
    rest = text[start:]
    text = text[:start] + (PARAM.format(param) if param is not None else "") + rest[rest.index("}\n}\n") + 4:]
    (model_dir / "config.pbtxt").write_text(text)
    assert served_options(MODEL_PY, model_dir) == {"chunk_tokens": expected}


def test_a_model_py_without_length_chunks_gets_no_options(tmp_path: Path) -> None:
    assert served_options(type(shutil)("old_model_py"), tmp_path) == {}


def test_live_summary_counts_failures_and_splits_the_first_seconds() -> None:
    from loadtests.live_client import LiveSample, live_summary

    samples = [LiveSample(0.5, 300.0, 200), LiveSample(1.0, 250.0, 200), LiveSample(6.0, 20.0, 200),
               LiveSample(7.0, 30.0, 200), LiveSample(8.0, 9999.0, 0)]
    assert live_summary(samples, first_s=5.0) == {
        "live_requests": 5, "live_failed": 1, "live_p50_ms": 30.0, "live_p99_ms": 300.0,
        "live_first_5s_p50_ms": 250.0, "live_first_5s_p99_ms": 300.0}
    assert live_summary([])["live_p50_ms"] is None
