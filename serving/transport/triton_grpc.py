"""One inference call to a tritonserver over gRPC (grpc.aio), used by a replica's backend and by
the ingress's short path alike."""

from __future__ import annotations

import numpy as np

from distilserve.core.tensors import INPUT_TEXT, OUTPUT_LABEL, OUTPUT_PROBABILITIES
from serving.transport.failure import Failure

_UNAVAILABLE = ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "StatusCode.DEADLINE_EXCEEDED")


async def triton_infer(client, model: str, version: str, texts: list[str],  # noqa: ANN001 - a grpc.aio client
                       timeout_s: float | None = None) -> tuple[np.ndarray, list[str]]:
    """One inference over gRPC: probabilities [N, C] and labels.

    Raises Failure "unavailable" when the server cannot be reached or did not answer within
    `timeout_s`, Failure "model" for anything the server answered with an error (the model
    failed on this request).
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    arr = np.array([t.encode() for t in texts], dtype=np.object_).reshape(len(texts), 1)
    inp = grpcclient.InferInput(INPUT_TEXT, list(arr.shape), "BYTES")
    inp.set_data_from_numpy(arr)
    try:
        result = await client.infer(model, [inp], model_version=version, client_timeout=timeout_s)
    except InferenceServerException as e:
        if str(e.status()) in _UNAVAILABLE:
            raise Failure("unavailable", f"Triton for {model} v{version} unreachable: {e.message()}") from None
        raise Failure("model", str(e.message() or e)) from None
    probs = result.as_numpy(OUTPUT_PROBABILITIES)
    labels = [x.decode() if isinstance(x, bytes) else str(x) for x in result.as_numpy(OUTPUT_LABEL).reshape(-1)]
    return probs, labels
