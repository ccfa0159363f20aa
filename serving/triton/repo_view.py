"""A replica's private view of the model repository: one model, one version.

Triton's explicit mode loads every version its version_policy admits. Each ModelVersion
replica serves exactly one version, so it points its server at a small folder of its own:
a patched config.pbtxt plus a symlink to the real version folder. The shared repository is
never written, and a version added or pruned there cannot change what a replica serves.
"""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")


def patch_config(text: str, version: str, *, gpu: bool = False, torch_threads: int | None = None) -> str:
    """config.pbtxt text serving only `version`, on GPU instances when `gpu`."""
    if not _VERSION.match(version):
        raise ValueError(f"version must be a positive integer like '1', got {version!r}")
    out = re.sub(r"(?ms)^version_policy\s*:?\s*\{.*?^\}\s*$", "", text)
    out = re.sub(r"^version_policy\s*:.*$", "", out, flags=re.M)
    if gpu:
        out = out.replace("KIND_CPU", "KIND_GPU")
    if torch_threads is not None:
        out = re.sub(
            r'(key:\s*"TORCH_NUM_THREADS"\s*value:\s*\{\s*string_value:\s*")\d+(")', rf"\g<1>{torch_threads}\g<2>", out
        )
    return out.rstrip() + f"\nversion_policy: {{ specific: {{ versions: [ {version} ] }} }}\n"


def make_view(repository: Path, model: str, version: str, dest: Path, *, gpu: bool = False,
              torch_threads: int | None = None) -> Path:
    """Lay out `dest/<model>/{config.pbtxt,<version>}`; returns `dest` (the view's repository)."""
    if not _NAME.match(model):
        raise ValueError(f"model name must match {_NAME.pattern}, got {model!r}")
    src_model = (Path(repository) / model).resolve()
    src_version = src_model / version
    if not (src_model / "config.pbtxt").is_file():
        raise FileNotFoundError(f"model {model!r} has no config.pbtxt in {repository}")
    if not _VERSION.match(version) or not src_version.is_dir():
        raise FileNotFoundError(f"version {version!r} of model {model!r} not found in {repository}")
    view_model = Path(dest) / model
    view_model.mkdir(parents=True, exist_ok=True)
    text = (src_model / "config.pbtxt").read_text()
    (view_model / "config.pbtxt").write_text(patch_config(text, version, gpu=gpu, torch_threads=torch_threads))
    link = view_model / version
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(src_version, target_is_directory=True)
    return Path(dest)
