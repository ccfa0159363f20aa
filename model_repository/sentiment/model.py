"""The one generic Triton Python-backend model for sequence-classification versions.

Every version folder `<model>/<N>/` holds a symlink to this file plus its own weights
(safetensors), tokenizer files and card.json; `initialize` loads whichever folder Triton
hands it. Runs inside Triton's Python stub: torch, transformers, numpy and
triton_python_backend_utils only (never serving, Ray or FastAPI).

The `Classifier` class has no Triton dependency, so the in-process PyTorch backend loads
this same file and serves identical predictions.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

try:  # present inside Triton's stub; absent when the in-process backend imports this file
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - exercised by the torch backend
    pb_utils = None

_HALF = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class Classifier:
    """Tokenize + forward + softmax for one exported version folder."""

    def __init__(self, version_dir: str | Path, device: str = "cpu") -> None:
        version_dir = Path(version_dir)
        card_path = version_dir / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self.max_len = int(card.get("max_seq_len", 128))
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(version_dir)
        model = AutoModelForSequenceClassification.from_pretrained(version_dir, use_safetensors=True)
        # Half-precision exports are for GPUs; CPU kernels for them are slow or missing.
        dtype = _HALF.get(str(card.get("dtype", "float32")))
        model = model.to(self.device, dtype=dtype if dtype is not None and self.device.type == "cuda" else torch.float32)
        self.model = model.eval()
        cfg = self.model.config
        self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]

    @torch.inference_mode()
    def predict(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """Probabilities [N, C] (float32) and the argmax label of each text."""
        enc = self.tokenizer(texts, truncation=True, max_length=self.max_len, padding=True, return_tensors="pt")
        logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits
        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float32)
        return probs, [self.labels[i] for i in probs.argmax(axis=1)]


def decode_texts(raw: np.ndarray) -> list[str]:
    """BYTES tensor -> list of str; raises ValueError naming the first bad item."""
    texts = []
    for i, item in enumerate(raw.reshape(-1)):
        try:
            texts.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
        except UnicodeDecodeError as e:
            raise ValueError(f"TEXT[{i}] is not valid UTF-8: {e}") from None
    if not texts:
        raise ValueError("TEXT is empty")
    return texts


def _exit_when_orphaned(period_s: float = 1.0) -> None:
    """Exit this stub when its tritonserver is gone (killed hard, the stub was seen to linger)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        threads = int(params.get("TORCH_NUM_THREADS", "0") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        device = "cpu"
        if args.get("model_instance_kind") == "GPU" and torch.cuda.is_available():
            device = f"cuda:{args.get('model_instance_device_id', '0')}"
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.clf = Classifier(version_dir, device=device)
        _exit_when_orphaned()

    def _respond(self, probs: np.ndarray, labels: list[str]):  # noqa: ANN202 - pb_utils types
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("PROBABILITIES", probs),
                pb_utils.Tensor("LABEL", np.array([[x.encode()] for x in labels], dtype=np.object_)),
            ]
        )

    def execute(self, requests: list) -> list:
        """Exactly one response per request; a bad request gets an error, the rest succeed."""
        responses: list = [None] * len(requests)
        batch: list[tuple[int, list[str]]] = []
        for i, request in enumerate(requests):
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, "TEXT")
                if tensor is None:
                    raise ValueError("input TEXT is missing")
                batch.append((i, decode_texts(tensor.as_numpy())))
            except Exception as e:  # noqa: BLE001 - belongs to this request only
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e)))
        if batch:
            try:  # one forward pass for every good request Triton batched together
                probs, labels = self.clf.predict([t for _, texts in batch for t in texts])
                offset = 0
                for i, texts in batch:
                    n = len(texts)
                    responses[i] = self._respond(probs[offset : offset + n], labels[offset : offset + n])
                    offset += n
            except Exception:  # noqa: BLE001 - isolate the failing request by retrying one by one
                for i, texts in batch:
                    try:
                        responses[i] = self._respond(*self.clf.predict(texts))
                    except Exception as e:  # noqa: BLE001
                        responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(f"model failed: {e}"))
        return responses

    def finalize(self) -> None:
        self.clf = None
