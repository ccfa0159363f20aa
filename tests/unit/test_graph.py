"""Traced graphs (distill.graph, model.py's load_graph): written only when they match transformers,
served with torch alone, weights taken from model.safetensors, and never in the way."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from distill import export, graph
from distill.models import tiny_teacher
from tests.helpers import REPO_ROOT, TEMPLATE

TEXTS = ["good", "bad fine good bad", "", "fine " * 80]
LATENCY = [{"batch_size": 1, "p50_ms": 1.0, "p99_ms": 2.0, "runs": 5}]


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    if not (repo / "sentiment").is_dir():
        shutil.copytree(TEMPLATE, repo / "sentiment", ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    return repo


def _export(tmp_path: Path, model: torch.nn.Module, tok, dtype: torch.dtype | None = None) -> Path:  # noqa: ANN001
    path, _ = export.export_version(
        model, tok, repo=_repo(tmp_path), model_name="sentiment", dtype=dtype,
        card_fields={"kind": "teacher", "labels": ["negative", "neutral", "positive"], "max_seq_len": 32,
                     "accuracy": 0.5, "eval_examples": 10, "latency": LATENCY},
        lineage_fields={"data_fingerprint": "test"},
    )
    return path


def _distilbert():  # noqa: ANN202 - a model and its tokenizer without token types
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, DistilBertTokenizerFast

    from distill.models import label_maps, tiny_vocab

    vocab = tiny_vocab(["good", "bad", "fine"])
    tok = DistilBertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    config = DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                              max_position_embeddings=128, **label_maps(("negative", "neutral", "positive")))
    torch.manual_seed(0)
    return DistilBertForSequenceClassification(config), tok


def _model_py(version_dir: Path):  # noqa: ANN202 - the repository's model.py as a module
    return export.load_model_py(version_dir.parent)


def _probs(version_dir: Path, **kwargs) -> tuple[object, np.ndarray, list[str]]:
    clf = _model_py(version_dir).Classifier(version_dir, **kwargs)
    probs, labels = clf.predict(TEXTS)
    return clf, probs, labels


@pytest.mark.parametrize("arch, inputs", [("bert", ["input_ids", "attention_mask", "token_type_ids"]),
                                          ("distilbert", ["input_ids", "attention_mask"])])
def test_export_writes_a_weightless_graph_that_serves_as_transformers_does(
        arch: str, inputs: list[str], tmp_path: Path) -> None:
    model, tok = tiny_teacher(["good", "bad", "fine"], layers=2, hidden=32) if arch == "bert" else _distilbert()
    version = _export(tmp_path, model, tok)
    path = version / graph.GRAPH_FILE
    assert path.is_file()
    # The weights live once, in model.safetensors: the graph holds shapes, not values.
    stored = dict(torch.jit.load(str(path)).named_parameters())
    assert stored and all(p.untyped_storage().nbytes() <= p.element_size() for p in stored.values())
    assert {k.removeprefix("model.") for k in stored} <= set(load_file(str(version / export.WEIGHTS)))

    traced, probs, labels = _probs(version)
    plain, ref_probs, ref_labels = _probs(version, graph=False)
    assert traced.runner.graph_inputs == inputs and plain.runner.graph_inputs == []
    assert type(traced.tokenizer).__name__ == "FastTokenizer"
    assert labels == ref_labels and traced.labels == plain.labels
    np.testing.assert_allclose(probs, ref_probs, atol=1e-5)


def test_a_graph_replica_never_imports_transformers(tmp_path: Path) -> None:
    version = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16))
    code = ("import sys, importlib.util as u; s = u.spec_from_file_location('m', sys.argv[1]); m = u.module_from_spec(s);"
            " s.loader.exec_module(m); c = m.Classifier(sys.argv[2]); print(c.predict(['good'])[1]);"
            " print(sorted(k for k in ('transformers', 'torch') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(version.parent / "model.py"), str(version)],
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['torch']", out.stdout


def test_the_graph_takes_its_values_from_the_weights_file(tmp_path: Path) -> None:
    version = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16))
    weights = load_file(str(version / export.WEIGHTS))
    # Logits = the bias alone: probabilities 1/6, 2/6, 3/6 for every text. (The stripped graph's
    # own values are zeros, which would give 1/3 each.)
    weights["classifier.weight"] = torch.zeros_like(weights["classifier.weight"])
    weights["classifier.bias"] = torch.log(torch.tensor([1.0, 2.0, 3.0]))
    save_file(weights, str(version / export.WEIGHTS), metadata={"format": "pt"})
    clf, probs, _ = _probs(version)
    assert clf.runner.graph_inputs  # served by the graph
    np.testing.assert_allclose(probs, np.tile([1 / 6, 2 / 6, 3 / 6], (len(TEXTS), 1)), atol=1e-6)


def test_weights_of_another_shape_are_refused_naming_the_parameter(tmp_path: Path) -> None:
    version = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16))
    weights = load_file(str(version / export.WEIGHTS))
    weights["classifier.bias"] = torch.zeros(5)
    save_file(weights, str(version / export.WEIGHTS), metadata={"format": "pt"})
    sha = _card(version)["graph_sha256"]
    with pytest.raises(ValueError, match=r"model\.classifier\.bias.*\(3,\).*\(5,\)"):
        _model_py(version).load_graph(version, sha)
    del weights["classifier.bias"]
    save_file(weights, str(version / export.WEIGHTS), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="classifier.bias.*missing"):
        _model_py(version).load_graph(version, sha)


def _card(version: Path) -> dict:
    return json.loads((version / "card.json").read_text())


def test_only_the_graph_the_card_pins_is_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A graph file other than the one the export wrote and checked is never deserialised: the
    card pins its sha256. Another valid graph (here another model's) is refused, and so is any
    graph of a card without the hash; the version is then served by transformers."""
    one = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16, seed=1))
    two = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=2, hidden=16, seed=2))
    card = _card(one)
    assert card["graph_sha256"] == hashlib.sha256((one / graph.GRAPH_FILE).read_bytes()).hexdigest()
    _, ref_probs, _ = _probs(one)
    shutil.copy(two / graph.GRAPH_FILE, one / graph.GRAPH_FILE)
    with pytest.raises(ValueError, match=f"sha256 [0-9a-f]{{64}} is not card.json's graph_sha256 {card['graph_sha256']}"):
        _model_py(one).load_graph(one, card["graph_sha256"])
    with caplog.at_level(logging.WARNING):
        clf, probs, _ = _probs(one)
    assert clf.runner.graph_inputs == [] and any("graph_sha256" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(probs, ref_probs, atol=1e-5)
    with pytest.raises(ValueError, match="no graph_sha256"):
        _model_py(two).load_graph(two, None)


def test_an_unreadable_graph_falls_back_to_transformers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    version = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16))
    _, ref_probs, _ = _probs(version)
    (version / graph.GRAPH_FILE).write_bytes(b"not a torchscript archive")
    card = _card(version)
    card["graph_sha256"] = hashlib.sha256(b"not a torchscript archive").hexdigest()
    (version / "card.json").write_text(json.dumps(card))
    with caplog.at_level(logging.WARNING):
        clf, probs, _ = _probs(version)
    assert clf.runner.graph_inputs == []
    assert any(graph.GRAPH_FILE in r.getMessage() and "transformers" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(probs, ref_probs, atol=1e-5)


def _padding_branch(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with a forward that branches in Python on the data: a trace freezes one branch."""
    base = type(model)

    class PaddingBranch(base):
        def forward(self, **enc):  # noqa: ANN003, ANN201
            out = super().forward(**enc)
            if bool((enc["attention_mask"] == 0).any()):  # a padded batch
                out.logits = out.logits + 1.0
            return out

    branchy = PaddingBranch(model.config)
    branchy.load_state_dict(model.state_dict())
    return branchy.eval()


def test_a_trace_that_froze_a_branch_is_not_written(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model, tok = tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16)
    version = _export(tmp_path, model, tok)
    (version / graph.GRAPH_FILE).unlink()
    with caplog.at_level(logging.WARNING):
        assert graph.write_graph(_padding_branch(model), tok, version, _model_py(version), 32) is None
    assert not (version / graph.GRAPH_FILE).exists()
    assert any("differ" in r.getMessage() for r in caplog.records)
    # The same model without the branch traces and is kept.
    sha = graph.write_graph(model.eval(), tok, version, _model_py(version), 32)
    assert sha == hashlib.sha256((version / graph.GRAPH_FILE).read_bytes()).hexdigest()


def test_the_caller_s_model_keeps_its_weights(tmp_path: Path) -> None:
    model, tok = tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _export(tmp_path, model, tok)
    after = model.state_dict()
    assert all(after[k].shape == v.shape and torch.equal(after[k], v) for k, v in before.items())


def test_half_precision_export_has_no_graph_and_loads_as_before(tmp_path: Path) -> None:
    half = _export(tmp_path, *tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16), dtype=torch.float16)
    assert not (half / graph.GRAPH_FILE).exists()
    assert _card(half)["dtype"] == "float16" and _card(half)["graph_sha256"] is None
    assert _probs(half)[0].runner.graph_inputs == []


@pytest.mark.parametrize("dtype, device, reason", [
    (torch.float32, "cpu", None),
    (torch.float16, "cpu", "float16 on cpu"),
    (torch.bfloat16, "cpu", "bfloat16 on cpu"),
    (torch.float32, "meta", "float32 on meta"),
])
def test_which_models_can_be_traced(dtype: torch.dtype, device: str, reason: str | None) -> None:
    model = torch.nn.Linear(2, 2).to(device=device, dtype=dtype)
    why = graph.traceable(model)
    assert (why is None) if reason is None else (reason in why), why
    assert "no parameters" in graph.traceable(torch.nn.ReLU())


def test_a_model_py_without_graph_support_gets_no_graph(tmp_path: Path) -> None:
    model, tok = tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16)
    version = _export(tmp_path, model, tok)
    (version / graph.GRAPH_FILE).unlink()
    old_model_py = type(sys)("old_model_py")  # a module without load_graph, as an older repository has
    assert graph.write_graph(model, tok, version, old_model_py, 32) is None
    assert not (version / graph.GRAPH_FILE).exists()


@pytest.mark.parametrize("value, expected", [("auto", True), ("", True), (" AUTO ", True), ("off", False),
                                             ("Off", False), ("on", ValueError), ("false", ValueError)])
def test_torch_graph_parameter(value: str, expected: bool | type) -> None:
    model_py = export.load_model_py(TEMPLATE)
    if expected is ValueError:
        with pytest.raises(ValueError, match=f"TORCH_GRAPH.*{value.strip().lower()!r}"):
            model_py.torch_graph(value)
    else:
        assert model_py.torch_graph(value) is expected


@pytest.mark.parametrize("id2label, expected", [
    ({"0": "neg", "1": "pos"}, ["neg", "pos"]),
    ({"1": "pos", "0": "neg", "2": "mid"}, ["neg", "pos", "mid"]),
    ({"0": "neg", "2": "pos"}, ValueError),
    ({}, ValueError),
])
def test_labels_come_from_config_json_in_id_order(id2label: dict, expected: list | type, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"id2label": id2label}))
    model_py = export.load_model_py(TEMPLATE)
    if expected is ValueError:
        with pytest.raises(ValueError, match="id2label"):
            model_py.config_labels(tmp_path)
    else:
        assert model_py.config_labels(tmp_path) == expected
