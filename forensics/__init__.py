"""forensics: post-mortems of deep-learning training runs from the files they leave behind."""

__version__ = "0.1.0"

__all__ = ["ForensicsInputWarning", "read_log_scalars", "read_scalars", "__version__"]
_SCALAR_API = {"ForensicsInputWarning", "read_log_scalars", "read_scalars"}


def __getattr__(name: str):
    # Imported on first use: `import forensics.<anything>` should not pay for pandas and the readers.
    if name in _SCALAR_API:
        from forensics import scalars

        return getattr(scalars, name)
    raise AttributeError(f"module 'forensics' has no attribute {name!r}")
