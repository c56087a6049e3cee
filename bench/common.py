"""Timing helpers shared by the benchmarks: interleaved rounds, medians, machine facts."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["bare_passes", "interleaved", "machine", "summary", "ratio", "clock"]

clock = time.perf_counter


def summary(samples: list[float]) -> dict[str, Any]:
    """Median, quartiles, min and count of a list of seconds (or any numbers)."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        return {"median": None, "p25": None, "p75": None, "min": None, "n": 0}
    if n >= 2:
        q = statistics.quantiles(ordered, n=4, method="inclusive")
        p25, p75 = q[0], q[2]
    else:
        p25 = p75 = ordered[0]
    return {"median": statistics.median(ordered), "p25": p25, "p75": p75, "min": ordered[0], "n": n}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def interleaved(
    variants: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1, rotate: bool = True
) -> dict[str, list[float]]:
    """Time every variant once per round, ABCABC..., for ``rounds`` rounds; returns seconds per variant.

    The order inside a round rotates by one each round (ABC, BCA, CAB...) so no variant always runs right
    after the same neighbour (caches, CPU frequency). ``warmup`` untimed rounds run first.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names) if rotate and names else 0
        for name in names[shift:] + names[:shift]:
            fn = variants[name]
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return times


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import numpy
    import plotly
    import torch
    import torchvision

    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        import streamlit

        streamlit_version = streamlit.__version__
    except ImportError:  # pragma: no cover
        streamlit_version = None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "load_average": [round(x, 2) for x in load] if load else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "plotly": plotly.__version__,
        "streamlit": streamlit_version,
    }


def bare_passes(module: Any, prepare: Callable[[], Any]) -> tuple[Any, Callable[[], None], Callable[[], None]]:
    """The input prepared once, and the two baselines every extraction is measured against: ``module``'s forward
    pass under inference mode on that input, and the same with the preparation (``prepare()``: preprocessing) in
    each pass."""
    import torch

    tensor = prepare()

    def forward() -> None:
        with torch.inference_mode():
            module(tensor)

    def pre_forward() -> None:
        t = prepare()
        with torch.inference_mode():
            module(t)

    return tensor, forward, pre_forward
