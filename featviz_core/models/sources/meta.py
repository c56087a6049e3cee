"""Building architectures without memory: parameters and buffers on the ``meta`` device, no initialisation.

Used to learn what an architecture's state dict looks like (keys and shapes) in milliseconds, and to
build a model that then takes a checkpoint's tensors as they are (``load_state_dict(..., assign=True)``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["MetaAllocations", "fingerprint"]


class MetaAllocations(TorchFunctionMode):
    """Allocate new parameters and buffers on the ``meta`` device, and skip their initialisation.

    Unlike ``with torch.device("meta")``, this lets builders that compute their layout with tensors
    (RegNet calls ``.tolist()`` on ``torch.arange``) work, while no weight memory is allocated. In-place
    initialisers (``normal_``, ``uniform_`` ...) on meta tensors are skipped: they have no values to set,
    and running them through the meta kernels is most of a build's time.
    """

    _ALLOCATORS = frozenset(
        {
            torch.empty,
            torch.empty_strided,
            torch.empty_permuted,
            torch.zeros,
            torch.ones,
            torch.full,
            torch.rand,
            torch.randn,
        }
    )
    # In-place operations that change values only, never shapes.
    _INITIALISERS = frozenset(
        {
            "normal_", "uniform_", "zero_", "fill_", "copy_", "mul_", "add_", "sub_", "div_", "clamp_",
            "clamp_min_", "clamp_max_", "erfinv_", "exponential_", "bernoulli_", "random_", "abs_", "neg_",
            "sqrt_", "exp_", "log_", "trunc_normal_", "fmod_", "remainder_",
        }
    )  # fmt: skip

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in self._ALLOCATORS and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        elif (
            args
            and isinstance(args[0], torch.Tensor)
            and args[0].is_meta
            and getattr(func, "__name__", "") in self._INITIALISERS
        ):
            return args[0]
        return func(*args, **kwargs)


def fingerprint(keys: Iterable[str]) -> str:
    """A short digest of a set of state-dict key names (independent of order, classes and input channels)."""
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()[:16]
