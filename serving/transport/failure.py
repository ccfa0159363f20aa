"""The one failure type of the transport, from a replica's backend to the data plane.

A `Failure` is raised inside a replica and in the ingress, and *returned as a value* across
the Ray hop (`ModelVersion.predict`): an exception raised in a replica reaches the caller
wrapped with Ray's traceback (actor ids, pids); a value keeps the client-facing message
exactly what the backend said. The data plane turns it into the API's error once:
"model" -> 500 for that request only, "unavailable" -> 503 with Retry-After.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["model", "unavailable"]


class Failure(Exception):  # noqa: N818 - a value as much as an exception; "Error" would mislead
    """An inference that failed: `kind` "model" (the model failed on this input) or
    "unavailable" (the backend cannot take requests now; the call may be retried)."""

    def __init__(self, kind: Kind, message: str) -> None:
        super().__init__(kind, message)  # args carry both, so it pickles across the Ray hop
        self.kind: Kind = kind
        self.message = message

    def __str__(self) -> str:
        return self.message
