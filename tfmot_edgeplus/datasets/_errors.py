"""Errors raised by the dataset loaders.

The loaders never download anything: the data come from system or PyPI packages that the
project installs (see TOOLCHAIN.md). When a package is missing, or its files are damaged,
the error names the file or package that was looked for and the command that fixes it.
"""

from __future__ import annotations

__all__ = ["DatasetCorruptError", "DatasetError", "DatasetNotFoundError"]


class DatasetError(Exception):
    """Base class of every dataset loading error."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The data set's files or package are not installed on this machine."""


class DatasetCorruptError(DatasetError, ValueError):
    """The data set's files exist but are truncated, damaged or not what they claim to be."""
