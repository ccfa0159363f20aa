"""scripts/gpu_bench.py's dry run: the GPU benchmark's code paths on CPU with tiny models.

Every variant (torch fp32/fp16/bf16, ONNX fp32/fp16 on CUDA, fp16 on TensorRT) is built and
served in-process, two of them by a real tritonserver too; without CUDA the providers degrade
to CPU and the results file must say so. Checks behaviour, not speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_dry_run_measures_every_variant_and_writes_one_file(tmp_path: Path) -> None:
    out = tmp_path / "gpu_bench.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--dry-run", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["dry_run"] is True and result["device"] == "cpu"
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {f"{m}_{rt}_{dt}" for m in ("teacher", "student")
                         for rt, dt in [("torch", "fp32"), ("torch", "fp16"), ("torch", "bf16"), ("onnx-cuda", "fp32"),
                                        ("onnx-cuda", "fp16"), ("onnx-trt", "fp16")]}
    for name, row in rows.items():
        assert "skipped" not in row, name
        assert row["raw"]["b1_p50_ms"] > 0 and row["raw"]["b32_texts_per_s"] > 0, name
        assert row["raw"]["b32_chunked_texts_per_s"] > 0 and row["raw"]["chunk_tokens"] > 0, name
        if name in ("student_torch_fp32", "student_onnx-trt_fp16"):  # the dry run's Triton pair
            assert row["triton"]["errors"] == 0 and row["triton"]["texts_per_s"] > 0, name
        else:
            assert "triton" not in row, name
        if row["runtime"] == "onnx":  # no CUDA here: the session says what it really ran on
            assert row["raw"]["providers"] == ["CPUExecutionProvider"], name
    # On CPU, fp16/bf16 torch variants upcast to fp32 and ONNX fp32 is the same graph: same labels.
    for model in ("teacher", "student"):
        assert rows[f"{model}_torch_fp16"]["agreement_with_torch_fp32"] == 1.0
        assert rows[f"{model}_onnx-cuda_fp32"]["agreement_with_torch_fp32"] == 1.0
