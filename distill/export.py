"""Write a trained model as a numbered version of a Triton model repository.

Layout: `<repo>/<model>/<N>/` holds `model.safetensors`, `config.json`, tokenizer files,
`card.json`, `model.torchscript.pt` (the traced forward without weights, see `distill.graph`),
and `model.py` — a symlink to the model's one generic `<repo>/<model>/model.py` (Triton's
Python backend looks for model.py inside the version folder; no code is copied).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import ModuleType

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill import graph
from distilserve.core.card import Lineage, ModelCard

WEIGHTS = "model.safetensors"
log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def config_hash(config: dict) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()


def code_state(where: Path | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the git tree holding this code; ('unknown', False) outside git."""
    cwd = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit, bool(status.strip())


def next_version(model_dir: Path) -> str:
    """One more than the highest numbered version folder (1 for an empty model)."""
    nums = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return str(max(nums, default=0) + 1)


# The shipped model folder: its config.pbtxt and generic model.py serve any text classifier.
TEMPLATE_MODEL = Path(__file__).resolve().parent.parent / "model_repository" / "sentiment"


def _has_triton_files(model_dir: Path) -> bool:
    return (model_dir / "model.py").is_file() and (model_dir / "config.pbtxt").is_file()


def ensure_model_dir(repo: Path, model_name: str) -> Path:
    """`<repo>/<model_name>/` with config.pbtxt and the generic model.py, created if new.

    A new model copies them from `<repo>/sentiment/` if that exists, else from the shipped
    template; the config is rewritten as protobuf with the new model's name.
    """
    model_dir = Path(repo) / model_name
    if _has_triton_files(model_dir):
        return model_dir
    template = next((d for d in (Path(repo) / "sentiment", TEMPLATE_MODEL) if _has_triton_files(d)), None)
    if template is None:
        raise FileNotFoundError(
            f"{model_dir} needs config.pbtxt and the generic model.py, and no template was found "
            f"(looked in {Path(repo) / 'sentiment'} and {TEMPLATE_MODEL})"
        )
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((template / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    config.name = model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(template / "model.py", model_dir / "model.py")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    log.info("created model folder %s from %s", model_dir, template)
    return model_dir


def load_model_py(model_dir: Path) -> ModuleType:
    """The repository's generic model.py, imported as a plain module (it serves both runtimes)."""
    spec = importlib.util.spec_from_file_location(f"model_py_{model_dir.name}", model_dir / "model.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{model_dir} has no model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export_version(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    repo: Path,
    model_name: str,
    card_fields: dict,
    lineage_fields: dict,
    version: str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[Path, ModelCard]:
    """Save weights (safetensors), tokenizer and card.json as `<repo>/<model_name>/<version>/`.

    `card_fields` are ModelCard fields measured by the caller (accuracy, latency, ...);
    `lineage_fields` are Lineage fields other than the weights hash and code state, which
    are computed here from what was actually written.
    """
    model_dir = ensure_model_dir(repo, model_name)
    t0 = time.perf_counter()
    version = version or next_version(model_dir)
    final = model_dir / version
    if final.exists():
        raise FileExistsError(f"version {version} of {model_name!r} already exists at {final}")
    # Write into a hidden staging folder, then rename: Triton never sees a half-written version.
    staging = model_dir / f".staging-{version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        # nn.Module.to() casts in place: cast a copy so the caller's model stays as it was.
        to_save = copy.deepcopy(model).to(dtype) if dtype is not None else model
        to_save.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        weights = staging / WEIGHTS
        # The forward traced for a transformers-free replica start (kept only if it matches).
        graph_sha256 = graph.write_graph(to_save, tokenizer, staging, load_model_py(model_dir),
                                         max_len=int(card_fields.get("max_seq_len", 128)))
        commit, dirty = code_state()
        card = ModelCard(
            model=model_name,
            version=version,
            parameters=sum(p.numel() for p in model.parameters()),
            bytes=weights.stat().st_size,
            dtype=str(next(to_save.parameters()).dtype).removeprefix("torch."),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            lineage=Lineage(
                weights_sha256=sha256_file(weights),
                code_commit=commit,
                code_dirty=dirty,
                config_hash=config_hash(lineage_fields.get("config", {})),
                **lineage_fields,
            ),
            graph_sha256=graph_sha256,
            **card_fields,
        )
        card.write(staging)
        (staging / "model.py").symlink_to(Path("..") / "model.py")
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("exported %s: %s bytes of weights in %.1f s", final, f"{card.bytes:,}", time.perf_counter() - t0)
    return final, card
