"""Length-aware passes inside model.py: `length_chunks` finds the cheapest split of a call, and
`Classifier.predict` gives every text the result it gets in one padded pass."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from distill import export
from distill.models import tiny_teacher
from tests.helpers import TEMPLATE

MODEL_PY = export.load_model_py(TEMPLATE)


def _cost(lengths: list[int], groups: list[np.ndarray], overhead: float) -> float:
    return sum(overhead + len(g) * max(lengths[i] for i in g) for g in groups)


def _brute_force(lengths: list[int], overhead: float) -> float:
    """The cheapest cost over every split of the sorted lengths into contiguous runs."""
    s, n, best = sorted(lengths), len(lengths), float("inf")
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0, *[i + 1 for i, c in enumerate(cuts) if c], n]
        best = min(best, sum(overhead + (b - a) * s[b - 1] for a, b in itertools.pairwise(bounds)))
    return best


@pytest.mark.parametrize("lengths, overhead, expected", [
    ([], 32, [[]]),
    ([7], 32, [[0]]),
    ([40, 8, 9, 41], 0, [[0, 1, 2, 3]]),  # off: one pass, rows in their own order
    ([40, 8, 9, 41], -1, [[0, 1, 2, 3]]),
    ([10, 10, 10, 10], 32, [[0, 1, 2, 3]]),  # nothing to save: one pass
    ([60, 2], 32, [[1], [0]]),  # 32 + 2x60 = 152 in one pass; 34 + 92 = 126 in two
    ([60, 2], 100, [[0, 1]]),  # 220 in one; 262 in two
    ([40, 8, 9, 41], 16, [[1, 2], [0, 3]]),  # short with short, long with long
    ([9, 8, 9, 8], 1, [[1, 3], [0, 2]]),  # equal lengths stay in arrival order within a pass
])
def test_length_chunks_table(lengths: list[int], overhead: float, expected: list[list[int]]) -> None:
    assert [g.tolist() for g in MODEL_PY.length_chunks(lengths, overhead)] == expected


@pytest.mark.parametrize("seed", range(40))
def test_length_chunks_is_the_cheapest_split_and_covers_every_row_once(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(3, 64) for _ in range(rng.randint(2, 9))]
    overhead = rng.choice([1, 8, 32, 64, 200])
    groups = MODEL_PY.length_chunks(lengths, overhead)
    assert sorted(i for g in groups for i in g.tolist()) == list(range(len(lengths)))
    assert _cost(lengths, groups, overhead) == pytest.approx(_brute_force(lengths, overhead))


@pytest.mark.parametrize("value, expected", [("auto", None), ("", None), (" AUTO ", None), ("off", 0), ("0", 0),
                                             ("32", 32), (" 64 ", 64), ("on", ValueError), ("-1", ValueError),
                                             ("1.5", ValueError)])
def test_length_chunk_tokens_parameter(value: str, expected: int | None | type) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError, match=f"LENGTH_CHUNK_TOKENS.*{value.strip().lower()!r}"):
            MODEL_PY.length_chunk_tokens(value)
    else:
        assert MODEL_PY.length_chunk_tokens(value) == expected


class _RecordingRunner:
    """Logits that depend only on a row's real tokens (their sum and count), whatever the padding;
    records the shape of every pass."""

    labels = ["a", "b"]

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []

    def logits(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        ids, mask = enc["input_ids"], enc["attention_mask"]
        assert ids.shape == mask.shape and ids.flags.c_contiguous
        self.shapes.append(ids.shape)
        real = (ids * mask).sum(axis=1).astype(np.float32)
        return np.stack([real / 100.0, mask.sum(axis=1).astype(np.float32)], axis=1)


class _WordTokenizer:
    """One token per word (id = word length), padded on `padding_side` to the longest text."""

    def __init__(self, padding_side: str) -> None:
        self.padding_side = padding_side

    def __call__(self, texts: list[str], **_: object) -> dict[str, np.ndarray]:
        rows = [[len(w) for w in t.split()] for t in texts]
        width = max(len(r) for r in rows)
        ids, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
        for i, r in enumerate(rows):
            cols = slice(width - len(r), width) if self.padding_side == "left" else slice(0, len(r))
            ids[i, cols], mask[i, cols] = r, 1
        return {"input_ids": ids, "attention_mask": mask}


def _classifier(padding_side: str, chunk_tokens: int):  # noqa: ANN202 - model.py's Classifier, no weights
    clf = MODEL_PY.Classifier.__new__(MODEL_PY.Classifier)
    clf.tokenizer, clf.runner, clf.max_len = _WordTokenizer(padding_side), _RecordingRunner(), 128
    clf.labels, clf.chunk_tokens = clf.runner.labels, chunk_tokens
    return clf


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_each_pass_keeps_its_rows_real_tokens_and_results_return_in_order(padding_side: str) -> None:
    texts = ["a bb " * 20, "ccc", "dd e " * 19, "f gg", "hhhh " * 3]
    whole, split = _classifier(padding_side, 0), _classifier(padding_side, 4)
    p_whole, l_whole = whole.predict(texts)
    p_split, l_split = split.predict(texts)
    assert whole.runner.shapes == [(5, 40)]
    # words 40, 1, 38, 2, 3: {1, 2, 3} padded to 3 (4 + 9) and {38, 40} to 40 (4 + 80) is the cheapest
    assert split.runner.shapes == [(3, 3), (2, 40)]
    np.testing.assert_allclose(p_split, p_whole, rtol=1e-6)
    assert l_split == l_whole


def _version(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo / "sentiment", ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    path, _ = export.export_version(
        *tiny_teacher(["good", "bad", "fine", "not"], layers=2, hidden=32), repo=repo, model_name="sentiment",
        card_fields={"kind": "teacher", "labels": ["negative", "neutral", "positive"], "max_seq_len": 48,
                     "accuracy": 0.5, "eval_examples": 10,
                     "latency": [{"batch_size": 1, "p50_ms": 1.0, "p99_ms": 2.0, "runs": 5}]},
        lineage_fields={"data_fingerprint": "test"},
    )
    return path


@pytest.mark.parametrize("graph", [True, False])
def test_a_real_model_gives_every_text_the_same_answer_split_or_whole(graph: bool, tmp_path: Path) -> None:
    version = _version(tmp_path)
    rng = random.Random(0)
    texts = [" ".join(rng.choice(["good", "bad", "fine", "not"]) for _ in range(rng.randint(1, 40)))
             for _ in range(24)]
    whole = MODEL_PY.Classifier(version, graph=graph, chunk_tokens=0)
    split = MODEL_PY.Classifier(version, graph=graph, chunk_tokens=4)
    passes: list[tuple[int, ...]] = []
    logits = split.runner.logits
    split.runner.logits = lambda enc: passes.append(enc["input_ids"].shape) or logits(enc)
    p_whole, l_whole = whole.predict(texts)
    p_split, l_split = split.predict(texts)
    assert len(passes) > 1  # it did split
    assert l_split == l_whole
    np.testing.assert_allclose(p_split, p_whole, atol=1e-5)


def test_auto_is_on_for_cpu(tmp_path: Path) -> None:
    assert MODEL_PY.Classifier(_version(tmp_path)).chunk_tokens == MODEL_PY.CHUNK_TOKENS_CPU > 0
