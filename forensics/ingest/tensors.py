"""Tensor tests that do not import torch.

Every tensor the readers meet came out of `torch.load`, which imported torch already; so these
ask `sys.modules` instead of importing it, and a run without checkpoints never pays torch's
import (about 2 s and 300 MB per process).
"""

from __future__ import annotations

import sys
from typing import Any


def is_tensor(value: Any) -> bool:
    """True for a torch.Tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
