"""Prepare `.gpu/` for scripts/gpu_smoke.py on a GPU machine that has torch + transformers but
not this project's stack (the device machine here: no Ray, no Triton, 64 MiB to carry).

    .venv/bin/python scripts/gpu_smoke_prepare.py           # writes .gpu/ (git-ignore it)
    # on the GPU machine, from the repository root:
    cd .gpu && python3 gpu_smoke.py                          # -> $OUT/gpu_smoke.json

Carries model version 1 with fp16-stored weights (half the bytes; the smoke upcasts to fp32
or casts to bf16 on the GPU), the repository's model.py, and 1,000 held-out texts with their
labels and the CPU fp32 predictions the GPU results are compared with.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from distill.data import load_splits

    src, dst = ROOT / "model_repository" / "sentiment" / "1", ROOT / ".gpu"
    (dst / "v1").mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "card.json"):
        shutil.copy(src / name, dst / "v1" / name)
    shutil.copy(ROOT / "model_repository" / "sentiment" / "model.py", dst / "model.py")
    shutil.copy(ROOT / "scripts" / "gpu_smoke.py", dst / "gpu_smoke.py")
    weights = load_file(src / "model.safetensors")
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, dst / "v1" / "model.safetensors",
              metadata={"format": "pt"})
    test = load_splits().test.select(range(1000))
    spec = importlib.util.spec_from_file_location("model", src.parent / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    clf = module.Classifier(src)
    texts, labels = list(test["text"]), [clf.labels[i] for i in list(test["label"])]
    cpu: list[str] = []
    for i in range(0, len(texts), 50):
        cpu += clf.predict(texts[i:i + 50])[1]
    accuracy = sum(a == b for a, b in zip(cpu, labels, strict=True)) / len(labels)
    (dst / "texts.json").write_text(json.dumps({"texts": texts, "labels": labels, "cpu_fp32_labels": cpu,
                                                "cpu_fp32_accuracy": accuracy}))
    print(f"wrote {dst} (CPU fp32 accuracy on these 1,000 texts: {accuracy:.3f})")


if __name__ == "__main__":
    main()
