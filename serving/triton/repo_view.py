"""A replica's private view of the model repository: one model, one version.

Triton's explicit mode loads every version its version_policy admits. Each ModelVersion
replica serves exactly one version, so it points its server at a small folder of its own:
a patched config.pbtxt plus a symlink to the real version folder. The shared repository is
never written, and a version added or pruned there cannot change what a replica serves.

config.pbtxt is read and written as Triton's own protobuf (`ModelConfig`, shipped in
tritonclient), never edited as text: a field spelled another way or a nested block cannot be
missed, and a malformed file fails here with its parse error instead of inside Triton.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from distilserve.core.names import is_model_name, is_version

CONFIG_FILENAME = "config.pbtxt"
TORCH_THREADS_PARAMETER = "TORCH_NUM_THREADS"
"""model.py reads its torch thread count from this model-config parameter."""


class ModelConfigError(ValueError):
    """A config.pbtxt that is not a valid Triton ModelConfig."""


def read_config(text: str, source: str = CONFIG_FILENAME) -> pb.ModelConfig:
    """Parse config.pbtxt `text`; `source` names the file in the error.

    Raises:
        ModelConfigError: the text is not a ModelConfig in protobuf text format.
    """
    try:
        return text_format.Parse(text, pb.ModelConfig())
    except text_format.ParseError as e:
        raise ModelConfigError(f"{source} is not a valid Triton model config: {e}") from e


def instance_count(config: pb.ModelConfig) -> int:
    """Model instances Triton runs for `config`, i.e. batches it can execute at once.

    Each instance_group contributes `count` (Triton's default when unset: 1) instances, times
    its listed GPUs when it names some. A GPU group that names none gets `count` per visible GPU,
    which the config cannot tell: it is counted once (a lower bound; more is only a lost overlap).
    No instance_group at all: Triton makes one instance (per GPU on GPU machines; counted once).
    """
    total = 0
    for group in config.instance_group:
        count = group.count if group.count > 0 else 1
        total += count * max(1, len(group.gpus))
    return max(1, total)


def write_config(config: pb.ModelConfig) -> str:
    """config.pbtxt text of `config` (protobuf text format, as Triton reads it)."""
    return text_format.MessageToString(config)


def patch_config(text: str, version: str, *, gpu: bool = False, torch_threads: int | None = None,
                 instances: int | None = None, source: str = CONFIG_FILENAME) -> str:
    """config.pbtxt text serving only `version`, on GPU instances when `gpu`; with `instances`,
    that many model instances (one group: the first group's kind, or CPU/GPU as `gpu` says).

    Raises:
        ValueError: `version` is not a positive integer.
        ModelConfigError: `text` is not a valid model config.
    """
    if not is_version(version):
        raise ValueError(f"version must be a positive integer like '1', got {version!r}")
    config = read_config(text, source)
    # Assigning `specific` clears whichever policy (latest, all) the oneof held before.
    config.version_policy.specific.versions[:] = [int(version)]
    if gpu:
        for group in config.instance_group:
            if group.kind == pb.ModelInstanceGroup.KIND_CPU:
                group.kind = pb.ModelInstanceGroup.KIND_GPU
    if torch_threads is not None:
        config.parameters[TORCH_THREADS_PARAMETER].string_value = str(torch_threads)
    if instances is not None:
        if instances < 1:
            raise ValueError(f"instances must be at least 1, got {instances!r}")
        kind = (config.instance_group[0].kind if config.instance_group
                else pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU)
        del config.instance_group[:]
        config.instance_group.add(count=instances, kind=kind)
    return write_config(config)


def make_view(repository: Path, model: str, version: str, dest: Path, *, gpu: bool = False,
              torch_threads: int | None = None, instances: int | None = None) -> Path:
    """Lay out `dest/<model>/{config.pbtxt,<version>}`; returns `dest` (the view's repository)."""
    if not is_model_name(model):
        raise ValueError(f"model name must be lower case like 'sentiment', got {model!r}")
    src_model = (Path(repository) / model).resolve()
    src_version = src_model / version
    src_config = src_model / CONFIG_FILENAME
    if not src_config.is_file():
        raise FileNotFoundError(f"model {model!r} has no {CONFIG_FILENAME} in {repository}")
    if not is_version(version) or not src_version.is_dir():
        raise FileNotFoundError(f"version {version!r} of model {model!r} not found in {repository}")
    patched = patch_config(src_config.read_text(), version, gpu=gpu, torch_threads=torch_threads,
                           instances=instances, source=str(src_config))
    view_model = Path(dest) / model
    view_model.mkdir(parents=True, exist_ok=True)
    (view_model / CONFIG_FILENAME).write_text(patched)
    link = view_model / version
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(src_version, target_is_directory=True)
    return Path(dest)
