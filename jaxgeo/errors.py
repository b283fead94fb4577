"""Errors raised at the boundary (config, files, command line).

Every message names the thing at fault (a config key path, a file, a value) and what was
expected, so a user can fix the input without reading code.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a config key, a file, a value. Raised before any work starts."""


class ConfigError(InputError):
    """A configuration value is unknown, of the wrong type or out of range."""


class FileFormatError(InputError):
    """A file is missing, unreadable, or not of the expected kind or shape."""


class StoreExistsError(InputError):
    """An output store exists and overwriting was not requested."""
