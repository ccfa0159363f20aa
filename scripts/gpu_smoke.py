"""GPU smoke of the serving model code: the repository's model.py `Classifier` on CUDA, fp32 and bf16.

Runs where only torch + transformers exist (see scripts/gpu_smoke_prepare.py, which lays out
`.gpu/`); writes `$OUT/gpu_smoke.json` (or /tmp/gpu_smoke.json): accuracy on 1,000 held-out
texts, agreement with the CPU fp32 labels, and p50 latency at batch 1, 32 and 128.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _classifier_module():  # noqa: ANN202 - a module
    spec = importlib.util.spec_from_file_location("model", HERE / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _share(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b, strict=True)) / len(b)


def _p50_ms(clf, batch: list[str], runs: int = 30) -> float:  # noqa: ANN001 - a Classifier
    for _ in range(5):
        clf.predict(batch)
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        clf.predict(batch)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    module = _classifier_module()
    data = json.loads((HERE / "texts.json").read_text())
    texts, labels, cpu = data["texts"], data["labels"], data["cpu_fp32_labels"]
    result = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0),
              "cpu_fp32_accuracy": data["cpu_fp32_accuracy"], "runs": {}}
    print(json.dumps({k: result[k] for k in ("torch", "cuda", "gpu")}), flush=True)
    for dtype in ("float32", "bfloat16"):
        folder = Path(f"/tmp/v1_{dtype}")
        shutil.copytree(HERE / "v1", folder, dirs_exist_ok=True)
        card = json.loads((folder / "card.json").read_text())
        card["dtype"] = dtype  # the card's dtype is what model.py uses on CUDA
        (folder / "card.json").write_text(json.dumps(card))
        clf = module.Classifier(folder, device="cuda")
        got: list[str] = []
        for i in range(0, len(texts), 64):
            got += clf.predict(texts[i:i + 64])[1]
        run = {"param_dtype": str(next(clf.model.parameters()).dtype), "accuracy": _share(got, labels),
               "agreement_with_cpu_fp32": _share(got, cpu), "latency": {}}
        for bs in (1, 32, 128):
            p50 = _p50_ms(clf, texts[:bs])
            run["latency"][bs] = {"p50_ms": round(p50, 3), "texts_per_s": round(bs / p50 * 1000, 1)}
        result["runs"][dtype] = run
        print(dtype, json.dumps(run), flush=True)
        del clf
        torch.cuda.empty_cache()
    out = Path(os.environ.get("OUT", "/tmp")) / "gpu_smoke.json"
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
