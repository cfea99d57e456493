"""The one exception type that means "this input cannot be analysed at all"."""


class ForensicsError(Exception):
    """Unusable input (no such run dir, output inside the run dir...): a one-line message, exit code 2."""
