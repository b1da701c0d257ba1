"""Errors a user can cause, with messages that name the bad item."""

from __future__ import annotations


class ProbeError(ValueError):
    """Bad input to a ``probe`` function.

    The message names the offending item (file and record, SMILES and index,
    day and value, tensor and index) so that the user can act on it.
    """
