"""The project's own errors: each one carries a message a user can act on, printed as one line."""

import math


def one_line(error: Exception) -> str:
    """An exception's message on one line (library messages often span several)."""
    return " ".join(str(error).split()) or type(error).__name__


class DigitsZooError(Exception):
    """Base of the errors that `train.py` reports as a single line instead of a stack trace."""


class UnknownModelError(DigitsZooError, ValueError):
    """A model name that is not in the registry."""


class DataError(DigitsZooError):
    """Dataset files that are missing, truncated or not what they claim to be."""


class ConfigError(DigitsZooError, ValueError):
    """A configuration value that cannot work (e.g. a hold-out as large as the training set)."""


def check_count(key: str, value: object) -> int:
    """`value` as a count of at least 1 (batch sizes, epochs), or a ConfigError naming `key`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key} must be a whole number of at least 1, got {value!r}")
    return value


def check_number(key: str, value: object, *, positive: bool) -> float:
    """`value` as a finite number > 0 (`positive`) or >= 0, or a ConfigError naming `key`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not (value > 0 if positive else value >= 0)
    ):
        raise ConfigError(f"{key} must be a finite number {'above' if positive else 'of at least'} 0, got {value!r}")
    return float(value)
