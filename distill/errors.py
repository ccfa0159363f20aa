"""The one error type for bad input to distillation and import (files, columns, labels, models).

Raised before any training starts; the CLI prints its message as `distilserve: error: ...`.
Light on purpose: the CLI imports it without torch or pandas.
"""

from __future__ import annotations


class InputError(ValueError):
    """User input that cannot be used as given; the message names the file, column or field."""
