"""The project's own errors: each one carries a message a user can act on, printed as one line."""


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
