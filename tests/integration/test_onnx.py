"""`distilserve compile` on a tiny trained version: ONNX and int8 parity, refusal, real Triton.

Tolerances (the tiny quick teacher, 100 test rows plus edge cases):
- fp32 ONNX: the same graph in another runtime; kernels reorder float sums, so probabilities
  differ by ~1e-7 (seen 9e-8 on 2,000 texts). Asserted: identical labels, |dp| <= 1e-5.
- int8 (dynamic, per-tensor weight scales): each weight moves by up to half a quantization step,
  probabilities by ~1e-4 (seen 2.2e-4, with 100% label agreement on 2,000 texts). A label can
  still flip wherever the top two classes are nearly tied, which a barely trained random model
  has more of than a real one: asserted are >= 95% label agreement and |dp| <= 0.02.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from distill.compile import CompileRefused, compile_version, held_out_rows
from distilserve.cli.main import main as cli_main
from distilserve.core.card import ModelCard
from serving.triton.repo_view import make_view
from serving.triton.server import TritonServer
from tests.helpers import copy_version, load_module

EDGE_TEXTS = ["", "ok", "caf\u00e9 \u2764 \U0001f600", "word " * 300, "SHOUTING!!! #wow @you"]
FP32_ATOL = 1e-5
INT8_ATOL = 0.02
INT8_MIN_AGREEMENT = 0.95


@pytest.fixture(scope="module")
def compiled(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository: 1 = the torch quick teacher, 2 = its ONNX fp32 (via the CLI), 3 = ONNX int8."""
    repo = tmp_path_factory.mktemp("onnx-repo")
    copy_version(tiny_repo, repo, "1")
    assert cli_main(["compile", "--repo", str(repo), "--model", "sentiment", "--version", "1",
                     "--runtime", "onnx", "--latency-runs", "5"]) == 0
    # int8 on 100 rows: one flipped row is a whole point, so the parity bound below is the check.
    compile_version(repo, "sentiment", "1", quantize="int8", force=True, latency_runs=5)
    return repo


@pytest.fixture(scope="module")
def texts(compiled: Path) -> list[str]:
    model_dir = compiled / "sentiment"
    return held_out_rows(ModelCard.read(model_dir / "1"), model_dir)[0] + EDGE_TEXTS


def _predict(repo: Path, version: str, texts: list[str]) -> tuple[np.ndarray, list[str]]:
    module = load_module(repo / "sentiment" / "model.py", f"onnx_test_model_{version}")
    clf = module.Classifier(repo / "sentiment" / version)
    assert clf.runtime == ("torch" if version == "1" else "onnx")
    return clf.predict(texts)


def test_onnx_fp32_gives_the_torch_labels_and_probabilities(compiled: Path, texts: list[str]) -> None:
    p_torch, l_torch = _predict(compiled, "1", texts)
    p_onnx, l_onnx = _predict(compiled, "2", texts)
    assert l_onnx == l_torch
    np.testing.assert_allclose(p_onnx, p_torch, rtol=0, atol=FP32_ATOL)


def test_onnx_int8_agrees_within_the_stated_bound(compiled: Path, texts: list[str]) -> None:
    p_torch, l_torch = _predict(compiled, "1", texts)
    p_int8, l_int8 = _predict(compiled, "3", texts)
    agreement = float(np.mean([a == b for a, b in zip(l_int8, l_torch, strict=True)]))
    assert agreement >= INT8_MIN_AGREEMENT
    np.testing.assert_allclose(p_int8, p_torch, rtol=0, atol=INT8_ATOL)
    np.testing.assert_allclose(p_int8.sum(axis=1), 1.0, rtol=1e-5)


def test_compiled_cards_record_runtime_lineage_and_measurements(compiled: Path) -> None:
    model_dir = compiled / "sentiment"
    parent = ModelCard.read(model_dir / "1")
    for version, quant, dtype in (("2", None, "float32"), ("3", "int8-dynamic", "int8")):
        card = ModelCard.read(model_dir / version)
        assert (card.runtime, card.quantization, card.dtype) == ("onnx", quant, dtype)
        assert card.lineage.parent_version == "1"
        assert card.lineage.data_fingerprint == parent.lineage.data_fingerprint
        assert card.lineage.config["recipe"] == "compile"
        assert card.eval_examples == parent.eval_examples and card.labels == parent.labels
        assert card.parent_agreement is not None and 0 <= card.parent_agreement <= 1
        assert [s.batch_size for s in card.latency] == [1, 32]
        assert card.bytes == (model_dir / version / "model.onnx").stat().st_size
        assert not (model_dir / version / "model.safetensors").exists()
        # The parent's traced torch graph is the parent's: neither copied nor pinned.
        assert not (model_dir / version / "model.torchscript.pt").exists() and card.graph_sha256 is None
        assert (model_dir / version / "model.py").resolve() == (model_dir / "model.py").resolve()
    fp32 = ModelCard.read(model_dir / "2")
    assert parent.graph_sha256 and (model_dir / "1" / "model.torchscript.pt").is_file()
    assert fp32.parent_agreement == 1.0  # the same graph: no label may move
    assert ModelCard.read(model_dir / "3").bytes < fp32.bytes  # int8 weights are a quarter the size


def test_refused_compile_writes_nothing_and_quotes_both_accuracies(compiled: Path) -> None:
    model_dir = compiled / "sentiment"
    before = sorted(p.name for p in model_dir.iterdir())
    # A negative allowance demands a gain the same graph cannot make: a deterministic refusal.
    with pytest.raises(CompileRefused, match=r"accuracy (\d\.\d{4}) vs parent \1 on 100 test rows.*refused"):
        compile_version(compiled, "sentiment", "1", max_drop_points=-1, latency_runs=5)
    assert sorted(p.name for p in model_dir.iterdir()) == before  # no version, no staging folder left


def test_cli_refusal_exits_1_and_compiling_an_onnx_version_is_a_usage_error(
    compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["compile", "--repo", str(compiled), "--latency-runs", "5"]
    assert cli_main([*base, "--version", "1", "--max-drop-points", "-1"]) == 1
    assert "compile refused: " in capsys.readouterr().err
    assert cli_main([*base, "--version", "2"]) == 2
    assert "version 2 is not a torch version" in capsys.readouterr().err


def test_triton_serves_the_onnx_version_with_the_torch_labels(
    compiled: Path, texts: list[str], tmp_path: Path
) -> None:
    """Real tritonserver, the shipped model.py, tensors renamed in config.pbtxt (model.py reads them)."""
    config = compiled / "sentiment" / "config.pbtxt"
    original = config.read_text()
    renamed = (original.replace('"TEXT"', '"REVIEW"').replace('"PROBABILITIES"', '"SCORES"')
               .replace('"LABEL"', '"CLASS"'))
    config.write_text(renamed)
    try:
        view = make_view(compiled, "sentiment", "2", tmp_path / "view")
    finally:
        config.write_text(original)
    p_torch, l_torch = _predict(compiled, "1", texts)
    with TritonServer(view) as srv:
        srv.load("sentiment")
        client = httpclient.InferenceServerClient(srv.http_url)
        arr = np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)
        out = []
        for i in range(0, len(arr), 32):  # max_batch_size is 64
            inp = httpclient.InferInput("REVIEW", [len(arr[i : i + 32]), 1], "BYTES")
            inp.set_data_from_numpy(arr[i : i + 32])
            out.append(client.infer("sentiment", [inp]))
        labels = [x.decode() for r in out for x in r.as_numpy("CLASS").reshape(-1)]
        probs = np.concatenate([r.as_numpy("SCORES") for r in out])
        assert labels == l_torch
        np.testing.assert_allclose(probs, p_torch, rtol=0, atol=FP32_ATOL)
        # A bad request still gets its own error, named by the config's input name.
        bad = httpclient.InferInput("REVIEW", [1, 1], "BYTES")
        bad.set_data_from_numpy(np.array([[b"\xff\xfe"]], dtype=np.object_))
        with pytest.raises(InferenceServerException, match=r"REVIEW\[0\] is not valid UTF-8"):
            client.infer("sentiment", [bad])
        stats = json.loads(json.dumps(client.get_inference_statistics("sentiment")))
        assert stats["model_stats"][0]["version"] == "2"


@pytest.mark.parametrize("max_length", [8, 64, 128])
def test_light_tokenizer_encodes_exactly_as_transformers(compiled: Path, texts: list[str], max_length: int) -> None:
    """ONNX versions tokenize with the `tokenizers` library directly (no transformers import):
    the same ids, masks and token types as transformers' fast tokenizer, truncated and padded."""
    from transformers import AutoTokenizer

    module = load_module(compiled / "sentiment" / "model.py", "onnx_test_model_tok")
    folder = compiled / "sentiment" / "2"
    light = module.load_tokenizer(folder, light=True)
    assert isinstance(light, module.FastTokenizer)
    reference = AutoTokenizer.from_pretrained(folder)
    for batch in (texts[:1], texts[:7], texts):
        got = light(batch, truncation=True, max_length=max_length, padding=True, return_tensors="np")
        want = reference(batch, truncation=True, max_length=max_length, padding=True, return_tensors="np")
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_an_onnx_version_loads_without_torch_or_transformers(compiled: Path) -> None:
    """What makes an ONNX replica's Triton ready in about a second instead of ~7 s here."""
    import subprocess
    import sys

    code = (
        "import sys; from tests.helpers import load_module; "
        f"m = load_module(__import__('pathlib').Path({str(compiled / 'sentiment' / 'model.py')!r}), 'light'); "
        f"clf = m.Classifier({str(compiled / 'sentiment' / '2')!r}); clf.predict(['fine']); "
        "print(sorted(x for x in ('torch', 'transformers') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
