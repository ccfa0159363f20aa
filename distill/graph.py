"""A torch version's traced graph: the file that lets a replica start without transformers.

transformers' modelling code costs a Triton stub 6-9 s of imports here before it reads a weight
(torch.distributed.tensor, torch._dynamo and generation utilities come with it); the forward
itself needs none of it. So the export traces the classifier's forward once
(`torch.jit.trace`) and writes it beside the weights as `model.torchscript.pt`, which model.py's
`load_graph` runs with torch alone.

- **Weights once.** Every parameter in the file is a zero-stride view of one element, shape and
  dtype kept; `load_graph` takes the values from model.safetensors, the file the card's sha256
  covers. The graph is about 0.2 MB whatever the model's size.
- **Checked, or not written.** The traced forward is loaded back through the repository's own
  model.py and must give transformers' logits on probe batches (one text, padded texts of
  different lengths, equal lengths, a truncated one) within `TOLERANCE`. A trace that froze a
  shape-dependent branch would differ there; then no graph is written and the version is served
  through transformers as before.
- **Pinned.** The card records the graph's sha256 (`graph_sha256`); model.py hashes the file
  before `torch.jit.load` and refuses one that differs, so only the graph this export wrote and
  checked is ever deserialised (TorchScript archives use a restricted pickle format; the
  project's no-pickle scan allows this one call for that reason).
- **Optional.** A version without the file, a GPU instance, a half-precision export, or
  TORCH_GRAPH 'off' in config.pbtxt use transformers. TorchScript is deprecated, not removed, in
  torch 2.13: if a later torch drops it, the trace here fails (no graph) and so does the load
  there (transformers serves).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import warnings
from pathlib import Path
from types import ModuleType

import torch

log = logging.getLogger(__name__)

GRAPH_FILE = "model.torchscript.pt"  # model.py's GRAPH_FILE
GRAPH_PREFIX = "model."  # model.py's GRAPH_PREFIX: the wrapper's attribute name
TOLERANCE = 1e-4  # largest |logit difference| accepted against transformers on the probe batches
PROBE_TEXTS = (
    ["good"],
    ["a short one", "a much longer probe text, with punctuation and several more words to pad the first"],
    ["same length a", "same length b"],
    ["word " * 600, "short"],  # longer than any max_seq_len: truncated
)


class _Logits3(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


class _Logits2(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def traceable(model: torch.nn.Module) -> str | None:
    """Why `model` gets no graph, or None when it can: fp32 weights on the CPU only."""
    param = next(model.parameters(), None)
    if param is None:
        return "it has no parameters"
    if param.device.type != "cpu" or param.dtype != torch.float32:
        return f"its weights are {param.dtype} on {param.device.type} (graphs are for fp32 on the CPU)"
    return None


def _inputs(tokenizer) -> list[str]:  # noqa: ANN001 - any transformers tokenizer
    names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    return ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in names else [])


def _encode(tokenizer, texts: list[str], max_len: int) -> dict[str, torch.Tensor]:  # noqa: ANN001
    return dict(tokenizer(texts, truncation=True, max_length=max_len, padding=True, return_tensors="pt"))


def trace(model: torch.nn.Module, tokenizer, max_len: int) -> torch.jit.ScriptModule:  # noqa: ANN001
    """The forward of `model` in eval mode, traced on padded texts; its parameters are shared."""
    names = _inputs(tokenizer)
    wrapper = (_Logits3 if "token_type_ids" in names else _Logits2)(model.eval())
    example = _encode(tokenizer, PROBE_TEXTS[1], max_len)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about Python ints, and TorchScript's deprecation
        return torch.jit.trace(wrapper, tuple(example[n] for n in names), check_trace=False)


def strip_weights(graph: torch.jit.ScriptModule) -> None:
    """Each parameter becomes a zero-stride view of one element: same shape and dtype, no data."""
    for _, param in graph.named_parameters():
        param.data = torch.zeros((), dtype=param.dtype).expand(param.shape)


def probe_logits(model: torch.nn.Module, tokenizer, max_len: int) -> list[torch.Tensor]:  # noqa: ANN001
    """`model`'s logits on each probe batch."""
    with torch.inference_mode():
        return [model(**_encode(tokenizer, texts, max_len)).logits for texts in PROBE_TEXTS]


def max_difference(expected: list[torch.Tensor], tokenizer, model_py: ModuleType, version_dir: Path,  # noqa: ANN001
                   max_len: int, sha256: str) -> float:
    """Largest |logit difference| from `expected` of the graph as model.py loads it from `version_dir`."""
    graph = model_py.load_graph(version_dir, sha256)
    names = model_py.graph_inputs(graph)
    worst = 0.0
    with torch.inference_mode():
        for texts, logits in zip(PROBE_TEXTS, expected, strict=True):
            enc = _encode(tokenizer, texts, max_len)
            worst = max(worst, float((graph(*(enc[n] for n in names)) - logits).abs().max()))
    return worst


def write_graph(model: torch.nn.Module, tokenizer, version_dir: Path, model_py: ModuleType,  # noqa: ANN001
                max_len: int) -> str | None:
    """Trace `model` into `version_dir/model.torchscript.pt` (its weights already written there).

    Returns the graph's sha256, for the card (model.py loads no graph without it), or None when
    no graph was written (the reason is logged): not fp32 on the CPU, a model.py without
    `load_graph`, a failed trace, or a difference above `TOLERANCE`.
    """
    why = traceable(model)
    if why is None and not hasattr(model_py, "load_graph"):
        why = "the repository's model.py predates traced graphs"
    if why is not None:
        log.info("no traced graph for %s: %s", version_dir, why)
        return None
    path = Path(version_dir) / GRAPH_FILE
    try:
        # A copy in eval mode, as served: the trace shares its parameters, which get stripped;
        # the caller's model keeps its weights and its train/eval mode.
        model = copy.deepcopy(model).eval()
        expected = probe_logits(model, tokenizer, max_len)
        graph = trace(model, tokenizer, max_len)
        strip_weights(graph)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(graph, str(path))
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        worst = max_difference(expected, tokenizer, model_py, version_dir, max_len, sha256)
    except Exception as e:  # noqa: BLE001 - the graph is an optimisation; the version is complete without it
        path.unlink(missing_ok=True)
        log.warning("no traced graph for %s: %s: %s", version_dir, type(e).__name__, e)
        return None
    if worst > TOLERANCE:
        path.unlink()
        log.warning("no traced graph for %s: its logits differ from transformers' by %.2e (> %.0e)",
                    version_dir, worst, TOLERANCE)
        return None
    log.info("traced graph for %s: %d bytes, logits within %.1e of transformers'", version_dir,
             path.stat().st_size, worst)
    return sha256
