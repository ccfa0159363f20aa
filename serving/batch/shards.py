"""The pure bookkeeping of a resumable batch job: input keys, shard plan, manifest.

A job's input is cut into fixed, contiguous row ranges ("shards") that depend only on the
row count and `shard_rows`, so a restarted job plans exactly the same shards. Each shard's
predictions go to one parquet file written atomically (temporary name, fsync, rename); the
manifest lists the shards whose file is complete. A restart runs only the shards the
manifest does not list: a shard is either wholly present or rewritten, never half or twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

MANIFEST = "_manifest.json"  # "_" and "." names: parquet readers of DIR skip them
TMP_SUFFIX = ".tmp"


def input_key(text: str) -> str:
    """The cache key of one input: sha256 of its UTF-8 text, hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def input_fingerprint(keys: list[str]) -> str:
    """Identity of a whole input (its keys in order): a restart must see the same rows."""
    digest = hashlib.sha256(str(len(keys)).encode())
    for key in keys:
        digest.update(bytes.fromhex(key))
    return "sha256:" + digest.hexdigest()[:32]


@dataclass(frozen=True)
class Shard:
    """Rows [start, stop) of the input."""

    index: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def filename(self) -> str:
        return f"shard-{self.index:06d}.parquet"


def plan_shards(num_rows: int, shard_rows: int) -> list[Shard]:
    """Contiguous shards of `shard_rows` rows (the last may be shorter); none for an empty input."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    if num_rows < 0:
        raise ValueError(f"num_rows must be >= 0, got {num_rows}")
    return [Shard(i, start, min(start + shard_rows, num_rows))
            for i, start in enumerate(range(0, num_rows, shard_rows))]


class Manifest(BaseModel):
    """`DIR/_manifest.json`: what the job is and which shards are finished."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Model name.")
    version: str = Field(description="Model version that made every prediction in DIR.")
    labels: list[str] = Field(min_length=1, description="Class names in score order.")
    input: str = Field(description="Input path as given.")
    text_column: str = Field(description="Column holding the texts.")
    input_fingerprint: str = Field(description="See input_fingerprint(); a restart must match it.")
    num_rows: int = Field(ge=0, description="Rows in the input.")
    shard_rows: int = Field(ge=1, description="Rows per shard.")
    done: dict[int, int] = Field(default_factory=dict, description="Finished shard index -> rows written.")
    runs: list[dict] = Field(default_factory=list, description="One entry per run: start, end, rows, timings.")

    @property
    def shards(self) -> list[Shard]:
        return plan_shards(self.num_rows, self.shard_rows)

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.shards)

    @property
    def rows_done(self) -> int:
        return sum(self.done.values())

    def check_same_job(self, other: Manifest) -> None:
        """Raise ValueError naming every field where a restart differs from the job in DIR."""
        fields = ("model", "version", "text_column", "input_fingerprint", "num_rows", "shard_rows")
        diff = [f"{f}: {getattr(self, f)!r} in DIR, {getattr(other, f)!r} now" for f in fields
                if getattr(self, f) != getattr(other, f)]
        if diff:
            raise ValueError("output DIR holds a different job (" + "; ".join(diff)
                             + "); use another --output or --overwrite")


def pending_shards(manifest: Manifest, out_dir: Path) -> list[Shard]:
    """Shards to (re)run: not in the manifest, or listed but with their file missing."""
    return [s for s in manifest.shards
            if manifest.done.get(s.index) != s.rows or not (out_dir / s.filename).is_file()]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so a reader sees the old file or the whole new one, never a part."""
    tmp = path.with_name("." + path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_manifest(out_dir: Path, manifest: Manifest) -> None:
    atomic_write_bytes(out_dir / MANIFEST, json.dumps(manifest.model_dump(mode="json"), indent=1).encode())


def load_manifest(out_dir: Path) -> Manifest | None:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    return Manifest.model_validate_json(path.read_text())


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Delete half-written temporary files a killed run left behind."""
    gone = sorted(Path(out_dir).glob(".*" + TMP_SUFFIX))
    for path in gone:
        path.unlink(missing_ok=True)
    return gone
