"""The registry's one exception family: callers catch `RegistryError` at their boundary."""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every error the registry raises on purpose (bad input, conflicting state)."""


class VersionConflictError(RegistryError):
    """A version is registered again with different weights."""


class InvalidTrafficError(RegistryError, ValueError):
    """Traffic weights or shadow settings that cannot be applied."""


class RolloutConflictError(RegistryError):
    """A second rollout for a model that already has an active one, or a finished one reused."""


class _NamedKeyError(RegistryError, KeyError):
    # KeyError.__str__ returns repr(message), which wraps our sentence in quotes; the message is
    # already a sentence naming the key, so show it as is.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownVersionError(_NamedKeyError):
    """A model version that is not in the registry."""


class UnknownRolloutError(_NamedKeyError):
    """A rollout id that is not in the registry for that model."""


class UnknownRequestError(_NamedKeyError):
    """Feedback for a request_id that has no recorded prediction."""
