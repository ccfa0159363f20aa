"""Model and version names: the one place their patterns and derived names are written."""

from __future__ import annotations

import re

MODEL_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
"""A model name: lower case, starts with a letter, at most 64 characters (e.g. 'sentiment')."""
VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
"""A version: Triton's positive integer version folder, as a string (e.g. '2')."""

_MODEL_RE = re.compile(MODEL_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)


def is_model_name(value: str) -> bool:
    return bool(_MODEL_RE.fullmatch(value))


def is_version(value: str) -> bool:
    return bool(_VERSION_RE.fullmatch(value))


def app_name(model: str, version: str) -> str:
    """Ray Serve application name of one model version, e.g. 'sentiment-v2'."""
    return f"{model}-v{version}"


INGRESS_APP = "ingress"
"""Ray Serve application name of the ingress (route prefix '/')."""
CONTROLLER_APP = "controller"
"""Ray Serve application name of the controller (one replica, no route)."""
