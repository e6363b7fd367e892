"""The one error of the model repository package."""

from __future__ import annotations


class ModelRepositoryError(Exception):
    """A model version that cannot be read, checked or published.

    The message names the file (or folder) and the problem, so a caller can print it as is.
    """
