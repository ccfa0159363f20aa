"""Teacher logits computed once and kept on disk, keyed by what decides them.

A teacher's logits on a text depend on its weights, the tokenizer truncation length and the
text itself. The key is a sha256 over the teacher weights' sha256, the data fingerprint, the
max length and the texts (in order), so a different subset of the same split (another
``transfer_size``) gets its own entry instead of a wrong one. Entries are safetensors files:
no pickle on the read path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

DEFAULT_CACHE_DIR = Path(".distilserve/cache")
log = logging.getLogger(__name__)


def cache_key(teacher_sha256: str, data_fingerprint: str, max_len: int, texts: Sequence[str]) -> str:
    """Hex digest naming the teacher logits of `texts` (order matters: rows are aligned)."""
    h = hashlib.sha256()
    h.update(f"teacher={teacher_sha256}\ndata={data_fingerprint}\nmax_len={int(max_len)}\n".encode())
    for text in texts:
        # A length prefix keeps ["ab", "c"] and ["a", "bc"] apart.
        encoded = text.encode("utf-8")
        h.update(f"{len(encoded)}:".encode())
        h.update(encoded)
    return h.hexdigest()


class LogitCache:
    """A folder of `<key>.safetensors` files, each holding one float32 `logits` [N, C] array."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else DEFAULT_CACHE_DIR

    def path(self, key: str) -> Path:
        return self.root / f"teacher-logits-{key}.safetensors"

    def load(self, key: str) -> np.ndarray | None:
        """The cached array, or None when absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        return load_file(str(path))["logits"]

    def save(self, key: str, logits: np.ndarray) -> Path:
        """Write atomically (temp file + rename): a crash never leaves a truncated entry."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        save_file({"logits": np.ascontiguousarray(logits, dtype=np.float32)}, str(tmp))
        tmp.replace(path)
        return path

    def get_or_compute(self, key: str, n_rows: int, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        """(logits, hit). A cached entry with the wrong row count is recomputed, never trusted."""
        cached = self.load(key)
        if cached is not None and cached.shape[0] == n_rows:
            log.info("teacher logits for %s rows: cache hit (%s)", f"{n_rows:,}", self.path(key))
            return cached, True
        log.info("teacher logits for %s rows: not cached, computing (progress below)", f"{n_rows:,}")
        logits = np.asarray(compute(), dtype=np.float32)
        if logits.shape[0] != n_rows:
            raise ValueError(f"teacher logits have {logits.shape[0]} rows, expected {n_rows}")
        self.save(key, logits)
        return logits, False
