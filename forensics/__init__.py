"""forensics: post-mortems of deep-learning training runs from the files they leave behind."""

__version__ = "0.1.0"
