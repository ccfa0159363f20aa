"""The one generic Triton Python-backend model for sequence-classification versions.

Every version folder `<model>/<N>/` holds a symlink to this file plus its own weights, tokenizer
files and card.json; `initialize` loads whichever folder Triton hands it. The weights are either
PyTorch (`model.safetensors`, from `distilserve distill`) or ONNX (`model.onnx`, from
`distilserve compile`, optionally int8): the card's `runtime` says which, so one file keeps the
tokenizer, label and error logic for both. Runs inside Triton's Python stub: torch,
transformers, onnxruntime, tokenizers, numpy and triton_python_backend_utils only (never
serving, Ray or FastAPI).

Start-up matters (a scaled-up replica is not ready before its Triton has loaded this): torch and
transformers' modelling code take 6-9 s to import here, so they are imported only by what needs
them. An ONNX version with a `tokenizer.json` needs neither: ONNX Runtime and the `tokenizers`
library (what transformers' fast tokenizers wrap) load in a fraction of a second. A torch version
exported with a traced graph (`model.torchscript.pt`, see `load_graph`) needs torch only, about
2.5 s; without one, or on a GPU, transformers builds the model.

The `Classifier` class has no Triton dependency, so the in-process PyTorch backend and
`distilserve compile` load this same file and get identical predictions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

try:  # present inside Triton's stub; absent when the in-process backend imports this file
    import triton_python_backend_utils as pb_utils
except ImportError:  # pragma: no cover - exercised by the torch backend
    pb_utils = None

ONNX_FILE = "model.onnx"
ONNX_PREFERENCES = ("auto", "cpu", "cuda", "tensorrt")
WEIGHTS_FILE = "model.safetensors"
GRAPH_FILE = "model.torchscript.pt"
GRAPH_PREFIX = "model."
"""Parameter names in the traced graph are the safetensors names behind this prefix."""
CHUNK_TOKENS_CPU = 32
"""LENGTH_CHUNK_TOKENS 'auto' on CPU: a forward pass's own cost, in padded tokens (see `length_chunks`).
Measured on the 2-core machine, MiniLM teacher, 2 threads: a pass costs about 5 ms plus 0.1-0.16 ms a
token, and 16, 32 and 64 split calls of corpus texts about equally well (BENCHMARKS.md, "Length-sorted passes")."""


def runtime_of(version_dir: Path, card: dict) -> str:
    """'onnx' or 'torch': the card's `runtime` when it has one, else what the folder holds."""
    runtime = card.get("runtime") or ("onnx" if (Path(version_dir) / ONNX_FILE).is_file() else "torch")
    if runtime not in ("torch", "onnx"):
        raise ValueError(f"card.json runtime must be 'torch' or 'onnx', got {runtime!r} in {version_dir}")
    return runtime


def trt_options(input_names: Sequence[str], max_batch: int, max_len: int, fp16: bool) -> dict:
    """TensorRT provider options: one shape profile covering every batch Triton can form.

    Without a profile TensorRT builds a new engine for each new (batch, length) it sees, and
    padding to the longest text makes nearly every batch new.
    """
    def shapes(batch: int, seq: int) -> str:
        return ",".join(f"{name}:{batch}x{seq}" for name in input_names)

    return {"trt_profile_min_shapes": shapes(1, 1), "trt_profile_opt_shapes": shapes(max_batch, max_len),
            "trt_profile_max_shapes": shapes(max_batch, max_len), "trt_fp16_enable": fp16}


def onnx_providers(device: str, available: Sequence[str], prefer: str = "auto", trt: dict | None = None) -> list:
    """ONNX Runtime providers, best first, for `device` ('cpu' or 'cuda:N').

    On a GPU `auto` takes CUDA, not TensorRT: TensorRT builds its engines when the session
    starts (tens of seconds), which a replica that must be ready in seconds cannot afford; ask
    for it with prefer='tensorrt' (config parameter ONNX_PROVIDER; `trt` adds its options). A
    provider this onnxruntime build lacks (CPU wheels have no CUDA) is skipped, so the list
    always ends on CPU.
    """
    if prefer not in ONNX_PREFERENCES:
        raise ValueError(f"ONNX_PROVIDER must be one of {list(ONNX_PREFERENCES)}, got {prefer!r}")
    cpu = "CPUExecutionProvider"
    if not device.startswith("cuda") or prefer == "cpu":
        return [cpu]
    device_id = int(device.partition(":")[2] or 0)
    wanted = []
    if prefer == "tensorrt":
        cache = os.path.join(tempfile.gettempdir(), "distilserve-trt-cache")
        wanted.append(("TensorrtExecutionProvider", {"device_id": device_id, "trt_engine_cache_enable": True,
                                                     "trt_engine_cache_path": cache, **(trt or {})}))
    wanted.append(("CUDAExecutionProvider", {"device_id": device_id}))
    return [p for p in wanted if p[0] in available] + [cpu]


def load_graph(version_dir: Path, sha256: str | None):  # noqa: ANN201 - a torch ScriptModule
    """A torch version's traced forward (`model.torchscript.pt`) with its weights from model.safetensors.

    The export writes the graph with every parameter reduced to a zero-stride view of one
    element (shape kept, ~0.2 MB in all), so the weights exist once, in the file whose sha256
    the card records, and a corrupt weights file fails here as it fails transformers. Loading it
    imports torch and safetensors only; its logits equal transformers' on the export's probe
    batches (checked there, else no graph is written). CPU only: half-precision and GPU
    versions go through transformers.

    `sha256` is the card's `graph_sha256`: the file is hashed before it is deserialised, and
    anything but the graph the export wrote and checked is refused (a TorchScript archive is
    code plus a restricted pickle, so it is never loaded unpinned).

    Raises:
        ValueError: no pinned hash, another file, or a graph parameter missing from the
            weights or of another shape.
        Exception: whatever torch.jit.load or safetensors raise for an unreadable file.
    """
    import hashlib
    import io
    import warnings

    import torch
    from safetensors.torch import load_file

    data = (Path(version_dir) / GRAPH_FILE).read_bytes()
    if not sha256:
        raise ValueError("card.json records no graph_sha256 for it")
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise ValueError(f"its sha256 {found} is not card.json's graph_sha256 {sha256}")
    with warnings.catch_warnings():  # TorchScript is deprecated, not removed, in torch 2.13
        warnings.simplefilter("ignore", DeprecationWarning)
        # The bytes just hashed, not the path again: no window to swap the file.
        graph = torch.jit.load(io.BytesIO(data), map_location="cpu")
    weights = load_file(str(Path(version_dir) / WEIGHTS_FILE), device="cpu")
    for name, param in graph.named_parameters():
        tensor = weights.get(name.removeprefix(GRAPH_PREFIX))
        if tensor is None or tensor.shape != param.shape or tensor.dtype != param.dtype:
            have = "missing" if tensor is None else f"{tuple(tensor.shape)} {tensor.dtype}"
            raise ValueError(f"{GRAPH_FILE} wants {name} as {tuple(param.shape)} {param.dtype}; "
                             f"{WEIGHTS_FILE} has {have}")
        param.data = tensor
    return graph.eval()


def graph_inputs(graph) -> list[str]:  # noqa: ANN001 - a torch ScriptModule
    """The tokenizer outputs the traced forward takes, in order."""
    return [a.name for a in graph.forward.schema.arguments[1:]]


def _log(message: str, warn: bool = False) -> None:
    """To Triton's log inside a stub, else to Python logging."""
    if pb_utils is not None:
        (pb_utils.Logger.log_warn if warn else pb_utils.Logger.log_info)(message)
    else:
        import logging

        logging.getLogger(__name__).log(logging.WARNING if warn else logging.INFO, message)


class _TorchRunner:
    """Logits from a torch version: its traced graph on CPU when it has one, else transformers."""

    def __init__(self, version_dir: Path, card: dict, device: str, threads: int, graph: bool = True) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        if threads > 0:
            torch.set_num_threads(threads)
        self.graph_inputs: list[str] = []
        if graph and self.device.type == "cpu" and (Path(version_dir) / GRAPH_FILE).is_file():
            try:
                self.model = load_graph(version_dir, card.get("graph_sha256"))
                self.graph_inputs = graph_inputs(self.model)
                self.labels = config_labels(version_dir)
                _log(f"{version_dir}: serving the traced graph {GRAPH_FILE} (torch only)")
                return
            except Exception as e:  # noqa: BLE001 - the graph only saves time; transformers still serves
                _log(f"{version_dir}/{GRAPH_FILE} not used ({e}); loading the model with transformers", warn=True)
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(version_dir, use_safetensors=True)
        # Half-precision exports are for GPUs; CPU kernels for them are slow or missing.
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(str(card.get("dtype", "float32")))
        model = model.to(self.device, dtype=dtype if dtype is not None and self.device.type == "cuda" else torch.float32)
        self.model = model.eval()
        cfg = self.model.config
        self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]

    def logits(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        torch = self.torch
        with torch.inference_mode():
            if self.graph_inputs:
                ids = enc["input_ids"]
                args = [torch.from_numpy(enc[n] if n in enc else np.zeros_like(ids)) for n in self.graph_inputs]
                return self.model(*args).float().numpy()
            out = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in enc.items()}).logits
            return out.float().cpu().numpy()


def config_labels(version_dir: Path) -> list[str]:
    """Class names in output order from config.json's id2label, as transformers reads them."""
    cfg = json.loads((Path(version_dir) / "config.json").read_text())
    id2label = {int(k): str(v) for k, v in cfg.get("id2label", {}).items()}
    if not id2label or sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"{version_dir}/config.json id2label must number the classes 0..N-1, got {id2label}")
    return [id2label[i] for i in range(len(id2label))]


class _OnnxRunner:
    """Logits from `model.onnx` in ONNX Runtime (fp32 or int8 weights)."""

    def __init__(self, version_dir: Path, card: dict, device: str, threads: int, prefer: str,
                 max_batch: int) -> None:
        import onnxruntime as ort  # only ONNX versions need it

        opts = ort.SessionOptions()
        if threads > 0:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # `distilserve compile` records the graph's inputs; older graphs took BERT's three.
        names = card.get("lineage", {}).get("config", {}).get("inputs") or ["input_ids", "attention_mask",
                                                                             "token_type_ids"]
        trt = trt_options(names, max_batch, int(card.get("max_seq_len", 128)), card.get("dtype") == "float16")
        providers = onnx_providers(device, ort.get_available_providers(), prefer, trt)
        self.session = ort.InferenceSession(str(Path(version_dir) / ONNX_FILE), opts, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.labels = [str(x) for x in card.get("labels") or []]
        if not self.labels:
            raise ValueError(f"{version_dir}/card.json has no labels: an ONNX version needs them")

    def logits(self, enc: dict[str, np.ndarray]) -> np.ndarray:
        ids = enc["input_ids"]
        # A tokenizer without token types (RoBERTa-like) leaves them out; the graph may still want them.
        feed = {n: enc[n].astype(np.int64) if n in enc else np.zeros_like(ids, dtype=np.int64) for n in self.input_names}
        return np.asarray(self.session.run(None, feed)[0], dtype=np.float32)


class FastTokenizer:
    """A `tokenizer.json` run by the `tokenizers` library directly, called like a transformers
    tokenizer with (texts, truncation=True, max_length, padding=True, return_tensors="np"): the
    same encodings as transformers' fast tokenizer of the folder, without importing transformers
    (and torch). Padding side and pad token come from tokenizer_config.json, as transformers
    reads them."""

    def __init__(self, version_dir: Path) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(Path(version_dir) / "tokenizer.json"))
        cfg_path = Path(version_dir) / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        pad = cfg.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token = pad if pad is not None and self.tok.token_to_id(pad) is not None else None
        self.pad_id = self.tok.token_to_id(self.pad_token) if self.pad_token is not None else 0
        self.padding_side = cfg.get("padding_side", "right")
        self.type_ids = "token_type_ids" in cfg.get("model_input_names", ["input_ids", "token_type_ids",
                                                                          "attention_mask"])

    def __call__(self, texts: list[str], *, truncation: bool = True, max_length: int = 128, padding: bool = True,
                 return_tensors: str = "np") -> dict[str, np.ndarray]:
        if truncation:
            self.tok.enable_truncation(max_length=max_length, strategy="longest_first", stride=0)
        else:
            self.tok.no_truncation()
        if padding:
            if self.pad_token is None:
                raise ValueError("the tokenizer has no pad token: cannot pad a batch")
            self.tok.enable_padding(direction=self.padding_side, pad_id=self.pad_id, pad_token=self.pad_token)
        else:
            self.tok.no_padding()
        encs = self.tok.encode_batch(list(texts), add_special_tokens=True)
        out = {"input_ids": np.array([e.ids for e in encs], dtype=np.int64),
               "attention_mask": np.array([e.attention_mask for e in encs], dtype=np.int64)}
        if self.type_ids:
            out["token_type_ids"] = np.array([e.type_ids for e in encs], dtype=np.int64)
        return out


def load_tokenizer(version_dir: Path, light: bool = False):  # noqa: ANN201 - either tokenizer type
    """transformers' AutoTokenizer, or with `light` and a tokenizer.json, the `FastTokenizer` above."""
    if light and (Path(version_dir) / "tokenizer.json").is_file():
        return FastTokenizer(version_dir)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(version_dir)


def _gpu_usable(version_dir: str) -> bool:
    """Whether this version's runtime can use the GPU Triton gave the instance."""
    card_path = Path(version_dir) / "card.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if runtime_of(Path(version_dir), card) == "onnx":
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    import torch

    return torch.cuda.is_available()


def length_chunks(lengths: Sequence[int] | np.ndarray, overhead_tokens: float) -> list[np.ndarray]:
    """Rows of one call grouped into forward passes, each padded only to its own longest text.

    A batch padded to its longest text spends much of its work on padding when lengths vary
    (tweets: 18-41 tokens from p10 to p90, and a call of 16 pads all to its longest), and on CPU a
    pass costs about the same per token at any batch size. So a call is split: texts sorted by length, cut into
    runs that minimise the sum over runs of `overhead_tokens` (a pass's own cost, in tokens) plus
    rows x the run's longest length. The cuts are found exactly by dynamic programming over the
    sorted lengths (O(n^2), n <= max_batch_size). Returns index arrays into `lengths`, shortest
    texts first; one group, in the rows' own order, when one pass is cheapest, with fewer than two
    rows, or with `overhead_tokens` <= 0 (chunking off).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if overhead_tokens <= 0 or n < 2:
        return [np.arange(n)]
    order = np.argsort(lengths, kind="stable")
    longest = lengths[order]
    best = np.zeros(n + 1)  # best[j]: cheapest cost of the j shortest texts
    cut = np.zeros(n + 1, dtype=np.int64)  # cut[j]: where the last run of those j starts
    starts = np.arange(n)
    for j in range(1, n + 1):
        cost = best[:j] + overhead_tokens + (j - starts[:j]) * longest[j - 1]
        i = int(np.argmin(cost))  # the first minimum: the fewest, longest runs on ties
        best[j], cut[j] = cost[i], i
    groups, j = [], n
    while j > 0:
        groups.append(order[cut[j]:j])
        j = int(cut[j])
    return groups[::-1] if len(groups) > 1 else [np.arange(n)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


class Classifier:
    """Tokenize + forward + softmax for one exported version folder (torch or ONNX weights)."""

    def __init__(self, version_dir: str | Path, device: str = "cpu", *, threads: int = 0,
                 onnx_provider: str = "auto", max_batch: int = 64, graph: bool = True,
                 chunk_tokens: int | None = None) -> None:
        """`chunk_tokens`: see `length_chunks`; None picks CHUNK_TOKENS_CPU on CPU and 0 (off) on a GPU,
        where a pass's own cost is far larger against its per-token cost (not measured yet)."""
        version_dir = Path(version_dir)
        self.chunk_tokens = (CHUNK_TOKENS_CPU if str(device) == "cpu" else 0) if chunk_tokens is None else chunk_tokens
        card_path = version_dir / "card.json"
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self.max_len = int(card.get("max_seq_len", 128))
        self.runtime = runtime_of(version_dir, card)
        if self.runtime == "onnx":
            self.runner: _TorchRunner | _OnnxRunner = _OnnxRunner(version_dir, card, device, threads,
                                                                  onnx_provider, max_batch)
        else:
            self.runner = _TorchRunner(version_dir, card, device, threads, graph=graph)
        # Neither ONNX nor a traced graph needs transformers: nor does their tokenizer.
        light = self.runtime == "onnx" or bool(getattr(self.runner, "graph_inputs", None))
        self.tokenizer = load_tokenizer(version_dir, light=light)
        self.labels = self.runner.labels
        # What runs the weights: the torch module, or the ONNX Runtime session.
        self.model = self.runner.model if isinstance(self.runner, _TorchRunner) else self.runner.session

    def predict(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """Probabilities [N, C] (float32) and the argmax label of each text. Texts of different
        lengths run as several passes (`length_chunks`); each text's result is the same either way."""
        enc = dict(self.tokenizer(texts, truncation=True, max_length=self.max_len, padding=True,
                                  return_tensors="np"))
        mask = enc.get("attention_mask")
        lengths = mask.sum(axis=1) if mask is not None else None
        groups = length_chunks(lengths, self.chunk_tokens) if lengths is not None else []
        if len(groups) < 2:
            logits = self.runner.logits(enc)
        else:
            width, parts = mask.shape[1], []
            left = getattr(self.tokenizer, "padding_side", "right") == "left"
            for rows in groups:
                keep = int(lengths[rows].max())
                cols = slice(width - keep, width) if left else slice(0, keep)
                parts.append(self.runner.logits({k: np.ascontiguousarray(v[rows, cols]) for k, v in enc.items()}))
            logits = np.empty((len(texts), parts[0].shape[1]), dtype=parts[0].dtype)
            for rows, part in zip(groups, parts, strict=True):
                logits[rows] = part
        probs = _softmax(logits)
        return probs, [self.labels[i] for i in probs.argmax(axis=1)]


class TensorNames(NamedTuple):
    """The model's tensors as config.pbtxt names them."""

    text: str
    probabilities: str
    label: str


def tensor_names(config: dict) -> TensorNames:
    """Names from the model config: the one STRING input, the STRING output, the numeric output."""
    inputs = [t["name"] for t in config.get("input", []) if t.get("data_type") == "TYPE_STRING"]
    strings = [t["name"] for t in config.get("output", []) if t.get("data_type") == "TYPE_STRING"]
    numbers = [t["name"] for t in config.get("output", []) if t.get("data_type") != "TYPE_STRING"]
    if len(inputs) != 1 or len(strings) != 1 or len(numbers) != 1:
        raise ValueError(
            f"config.pbtxt must declare one TYPE_STRING input (the texts) and two outputs, one TYPE_STRING "
            f"(labels) and one numeric (probabilities); got inputs {inputs} and outputs {strings + numbers}"
        )
    return TensorNames(inputs[0], numbers[0], strings[0])


def decode_texts(raw: np.ndarray, name: str = "TEXT") -> list[str]:
    """BYTES tensor -> list of str; raises ValueError naming the first bad item."""
    texts = []
    for i, item in enumerate(raw.reshape(-1)):
        try:
            texts.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}[{i}] is not valid UTF-8: {e}") from None
    if not texts:
        raise ValueError(f"{name} is empty")
    return texts


def torch_graph(value: str) -> bool:
    """The TORCH_GRAPH parameter: 'auto' (or unset) uses a torch version's traced graph, 'off' never."""
    value = (value or "auto").strip().lower()
    if value not in ("auto", "off"):
        raise ValueError(f"TORCH_GRAPH must be 'auto' or 'off', got {value!r}")
    return value == "auto"


def length_chunk_tokens(value: str) -> int | None:
    """The LENGTH_CHUNK_TOKENS parameter: 'auto' (or unset: on for CPU, off on a GPU), 'off', or a
    pass's own cost in tokens (a whole number; 0 is off)."""
    value = (value or "auto").strip().lower()
    if value == "auto":
        return None
    if value == "off":
        return 0
    if not value.isdigit():
        raise ValueError(f"LENGTH_CHUNK_TOKENS must be 'auto', 'off' or a whole number of tokens, got {value!r}")
    return int(value)


def cpu_quota(cpu_max: str | None = None, cfs_quota_us: str | None = None, cfs_period_us: str | None = None) -> float | None:
    """CPUs a cgroup's CPU limit allows (a container's `--cpus`, a Kubernetes CPU limit), from cgroup
    v2's `cpu.max` ("QUOTA PERIOD" or "max PERIOD") or v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us`
    (-1: none); None when there is no limit or the text is not understood."""
    try:
        if cpu_max is not None:
            quota, period = cpu_max.split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if cfs_quota_us is not None and cfs_period_us is not None:
            quota_us, period_us = int(cfs_quota_us), int(cfs_period_us)
            return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (ValueError, ZeroDivisionError):
        return None
    return None


def usable_threads(requested: int, affinity_cpus: int, quota_cpus: float | None) -> int:
    """Intra-op threads for a configured count: never more than the CPUs this process may run on (its
    affinity) or its cgroup's limit, rounded up. More threads than CPUs only make the runtime's threads
    wait for each other (a replica on one CPU reached a 16% higher peak with 1 thread than with 2,
    BENCHMARKS.md). 0 or less asks for the runtime's own default, which follows the affinity mask (torch
    through OpenMP and ONNX Runtime 1.32, both seen under `taskset`) but not a cgroup's limit: under a
    limit tighter than the mask (a container with `--cpus 2` on a 64-core node), as many as it allows."""
    cap = max(1, affinity_cpus)
    if quota_cpus is not None and quota_cpus > 0:
        cap = min(cap, max(1, math.ceil(quota_cpus)))
    if requested <= 0:  # the default already keeps to the affinity: only a tighter cgroup limit sets a count
        return cap if cap < max(1, affinity_cpus) else requested
    return min(requested, cap)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpus_available() -> tuple[int, float | None]:
    """(CPUs in this process's affinity mask, its cgroup's CPU limit or None)."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota(cpu_max=_read("/sys/fs/cgroup/cpu.max"))
    if quota is None:
        quota = cpu_quota(cfs_quota_us=_read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"),
                          cfs_period_us=_read("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))
    return affinity, quota


SHM_REGION_PREFIX = "/dev/shm/triton_python_backend_shm_region_"


def mapped_regions(maps: str) -> set[str]:
    """The Python backend's shared-memory regions a /proc/PID/maps text names, not yet unlinked."""
    paths = {line.split(maxsplit=5)[-1] for line in maps.splitlines() if SHM_REGION_PREFIX in line}
    return {p for p in paths if p.startswith(SHM_REGION_PREFIX) and not p.endswith(" (deleted)")}


def _exit_when_orphaned(period_s: float = 1.0) -> None:
    """Exit this stub when its tritonserver is gone (killed hard, the stub was seen to linger),
    removing the regions it shares with that server: a killed server leaves them in /dev/shm."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent:
                for path in mapped_regions(_read("/proc/self/maps") or ""):
                    with contextlib.suppress(OSError):
                        os.unlink(path)
                os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        self.names = tensor_names(config)
        probs_config = pb_utils.get_output_config_by_name(config, self.names.probabilities)
        self.probs_dtype = pb_utils.triton_string_to_numpy(probs_config["data_type"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        device = "cpu"
        if args.get("model_instance_kind") == "GPU" and _gpu_usable(version_dir):
            device = f"cuda:{args.get('model_instance_device_id', '0')}"
        self.clf = Classifier(
            version_dir,
            device=device,
            threads=self._threads(int(params.get("TORCH_NUM_THREADS", "0") or 0)),  # either runtime's
            onnx_provider=params.get("ONNX_PROVIDER", "auto") or "auto",
            max_batch=max(1, int(config.get("max_batch_size", 64))),
            graph=torch_graph(params.get("TORCH_GRAPH", "auto")),
            chunk_tokens=length_chunk_tokens(params.get("LENGTH_CHUNK_TOKENS", "auto")),
        )
        _exit_when_orphaned()

    @staticmethod
    def _threads(configured: int) -> int:
        """TORCH_NUM_THREADS, capped at the CPUs this stub may use (`usable_threads`); a change is logged."""
        affinity, quota = cpus_available()
        threads = usable_threads(configured, affinity, quota)
        if threads != configured:
            asked = f"{configured} capped" if configured > 0 else f"{configured} (the runtime's default) set"
            _log(f"TORCH_NUM_THREADS {asked} to {threads}: this process may use {affinity} CPU(s)"
                 + (f" under a cgroup limit of {quota:g}" if quota is not None else ""))
        return threads

    def _respond(self, probs: np.ndarray, labels: list[str]):  # noqa: ANN202 - pb_utils types
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(self.names.probabilities, probs.astype(self.probs_dtype, copy=False)),
                pb_utils.Tensor(self.names.label, np.array([[x.encode()] for x in labels], dtype=np.object_)),
            ]
        )

    def execute(self, requests: list) -> list:
        """Exactly one response per request; a bad request gets an error, the rest succeed."""
        responses: list = [None] * len(requests)
        batch: list[tuple[int, list[str]]] = []
        name = self.names.text
        for i, request in enumerate(requests):
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None:
                    raise ValueError(f"input {name} is missing")
                batch.append((i, decode_texts(tensor.as_numpy(), name)))
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
