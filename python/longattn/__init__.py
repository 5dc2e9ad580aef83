"""longattn: fused attention for long-context prefill, at every head dim up to 512, on the CPU
and NVIDIA GPUs.

    o = longattn.attention(q, k, v, causal=True)          # torch, numpy or any DLPack tensors
    p = longattn.plan(q, k, v, causal=True)               # path, kernel, reason, transient bytes

torch.ops.longattn.attention (for torch.compile and CUDA graphs) is registered when torch is
imported before longattn, or by `import longattn.torch_ops`. The transformers integration is
longattn.integrations.transformers.register().
"""

import sys

from . import _C
from ._errors import (DeviceError, Error, InvalidArgumentError, OutOfMemoryError,
                      OverBudgetError, UnsupportedError)
from .api import Plan, attention, devices, merge_states, plan

__version__ = _C.version()

__all__ = ["attention", "plan", "merge_states", "devices", "Plan", "Error",
           "InvalidArgumentError", "UnsupportedError", "OverBudgetError", "OutOfMemoryError",
           "DeviceError", "__version__"]

if "torch" in sys.modules:
    from . import torch_ops  # noqa: F401
