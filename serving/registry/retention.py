"""Which versions a prune may retire, and deleting a version folder without leaving it."""

from __future__ import annotations

import shutil
from pathlib import Path

from serving.registry.traffic import version_key


def choose_prunable(available: list[str], keep: int, protected: set[str]) -> list[str]:
    """Pure: versions to retire, oldest first — all but the newest `keep`, never a protected one."""
    ordered = sorted(available, key=version_key)
    # max(0, ...): with keep > len, a negative start would slice from the end and keep too few.
    newest = set(ordered[max(0, len(ordered) - keep) :]) if keep > 0 else set()
    return [v for v in ordered if v not in newest and v not in protected]


def unsafe_reason(path: Path, model: str, version: str) -> str | None:
    """Why `path` must not be deleted as version `version` of `model`, or None when it may.

    Only a real folder at `<model dir>/<version>` qualifies, where `<model dir>` is named after
    the model (Triton's layout): no symlink as the version folder, no '..', nothing resolving
    elsewhere. A registry entry pointing anywhere else is left alone.
    """
    expected = f"<model dir>/{model}/{version}"
    if not path.is_absolute() or ".." in path.parts:
        return f"path {str(path)!r} is not an absolute, normalised {expected}"
    if path.name != version or path.parent.name != model:
        return f"path {str(path)!r} is not {expected}"
    if path.is_symlink():
        return f"path {str(path)!r} is a symlink; refusing to follow it"
    if path.exists() and not path.is_dir():
        return f"path {str(path)!r} is not a folder"
    if path.exists() and path.resolve() != path.parent.resolve() / version:
        return f"path {str(path)!r} resolves to {str(path.resolve())!r}, outside its model folder"
    return None


def remove_version_dir(path: Path, model: str, version: str) -> str | None:
    """Delete the version folder if it is safe; returns why it was not deleted, or None."""
    reason = unsafe_reason(path, model, version)
    if reason is not None:
        return reason
    if not path.exists():
        return None
    try:
        # rmtree unlinks symlinks inside the folder without following them.
        shutil.rmtree(path)
    except OSError as exc:
        return f"could not delete {str(path)!r}: {exc}"
    return None
