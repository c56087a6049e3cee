"""Feature visualization speed: resnet18 (random seeded weights) at 128 px.

- ``full run``: one complete ``visualize(model, "layer4", 0)`` (128 px, 256 steps): the issue's target is
  <= 10 s on this machine's 2 cores.
- ``by depth``: seconds per step and steps per second of ``visualize`` at the output of each stage (conv1,
  layer1 ... layer4), each a run of ``steps`` steps, timed in interleaved rounds. Stopping the forward pass
  at the target layer is what makes early layers fast; ``no early stop`` is the same step with the whole
  network run to its logits (a hook that keeps the layer's output without stopping), for comparison.
- ``robustness overhead``: the same runs with the random moves left out (the picture goes to the model as
  it is, at the same size): ``(with - without) / with`` is the share of a step spent on the
  transformations (target <= 15 %), from CPU time (wall-clock shares are reported too).
- ``lucid's view``: the full run once more with the model seeing lucid's whole moved frame (140 px)
  instead of its centre at the picture's size (128 px), to show what that choice costs; and ``view
  quality``: the activation that pictures of the demo model reach either way (the final picture, unmoved),
  so that the faster view is seen not to make weaker pictures.

Timings on a shared machine move by 10-30 %: compare ratios measured in the same run. The load average is
reported with the numbers (bench.common.machine).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from featviz_core import LoadedModel, load_torchvision
from featviz_core.visualize.param import PAD

from .common import clock, ratio, summary

__all__ = ["LAYERS", "TARGET_OVERHEAD", "TARGET_SECONDS", "run"]

core = importlib.import_module("featviz_core.visualize.optimize")  # the module (the package's name is the function)
LAYERS = ("conv1", "layer1", "layer2", "layer3", "layer4")
TARGET_SECONDS = 10.0
TARGET_OVERHEAD = 0.15


@contextmanager
def _no_robustness() -> Iterator[None]:
    """Leave the random moves out (no resampling, no gradient through a grid; the model sees the picture at
    the same size): what a step costs without transformation robustness."""
    apply_grid, grid = core.apply_grid, core.robustness_grid

    core.robustness_grid = lambda moves, size, device, view=None: None
    core.apply_grid = lambda pixels, _grid, fill=0.5: pixels
    try:
        yield
    finally:
        core.apply_grid, core.robustness_grid = apply_grid, grid


@contextmanager
def _lucid_view() -> Iterator[None]:
    """Sample the moved frame at lucid's own side (the picture plus the moves' border, 140 px for 128)."""
    grid = core.robustness_grid
    core.robustness_grid = lambda moves, size, device, view=None: grid(moves, size, device)
    try:
        yield
    finally:
        core.robustness_grid = grid


@contextmanager
def _no_early_stop() -> Iterator[None]:
    """Let the forward pass run to the end: the tap keeps the output (a copy) and does not stop."""
    original = core.Tap
    core.Tap = lambda *args, **kwargs: original(*args, **{**kwargs, "stop": False})
    try:
        yield
    finally:
        core.Tap = original


def _runner(model: LoadedModel, layer: str, steps: int, size: int,
            context: Callable[[], Any] | None = None) -> Callable[[], None]:
    def go() -> None:
        if context is None:
            core.visualize(model, layer, 0, size=size, steps=steps, seed=0)
        else:
            with context():
                core.visualize(model, layer, 0, size=size, steps=steps, seed=0)

    return go


def _interleaved_both(variants: dict[str, Callable[[], None]], rounds: int, warmup: int = 1
                      ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Like bench.common.interleaved (rotating order), timing each call's wall-clock seconds and the
    process's CPU seconds (all threads): CPU time hardly grows when other work shares the cores (torch's
    threads sleep while they wait, with OMP_WAIT_POLICY=PASSIVE), so ratios of CPU times stay readable on a
    busy machine."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            t0, c0 = clock(), time.process_time()
            variants[name]()
            wall[name].append(clock() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


QUALITY_CASES = (("block1.relu1", 3, "channel"), ("block2.relu2", 1, "neuron"), ("block2.relu2", 7, "channel"),
                 ("block3.relu2", 5, "channel"), ("block3.relu2", 27, "channel"), ("block3.conv2", 40, "negative"))


def view_quality(steps: int = 256, size: int = 128,
                 cases: tuple[tuple[str, int, str], ...] = QUALITY_CASES) -> list[dict[str, Any]]:
    """The value each case reaches on the demo model with the model seeing the centre of the moved frame
    (featviz) and lucid's whole frame: their ratio is near 1 when the view does not change the pictures."""
    from featviz_core import load_demo

    model, rows = load_demo(), []
    for layer, channel, objective in cases:
        ours = float(core.visualize(model, layer, channel, objective=objective, size=size, steps=steps).reached[0])
        with _lucid_view():
            lucid = float(core.visualize(model, layer, channel, objective=objective, size=size,
                                         steps=steps).reached[0])
        rows.append({"layer": layer, "channel": channel, "objective": objective, "centre_view": ours,
                     "lucid_view": lucid, "ratio": ratio(ours, lucid)})
    return rows


def run(rounds: int = 5, steps: int = 32, size: int = 128, full_steps: int = 256,
        layers: tuple[str, ...] = LAYERS, full_layer: str = "layer4",
        quality_cases: tuple[tuple[str, int, str], ...] = QUALITY_CASES) -> dict[str, Any]:
    model = load_torchvision("resnet18", weights=None)
    core.visualize(model, layers[0], 0, size=size, steps=2)  # warm-up: layer list, allocator, oneDNN
    variants: dict[str, Callable[[], None]] = {}
    for layer in layers:
        variants[f"{layer}"] = _runner(model, layer, steps, size)
        variants[f"{layer} no robustness"] = _runner(model, layer, steps, size, _no_robustness)
        variants[f"{layer} no early stop"] = _runner(model, layer, steps, size, _no_early_stop)
    wall, cpu = _interleaved_both(variants, rounds=rounds, warmup=1)
    per_step = {name: summary([t / steps for t in values]) for name, values in wall.items()}
    cpu_step = {name: summary([t / steps for t in values])["median"] for name, values in cpu.items()}
    depth = []
    for layer in layers:
        step = per_step[layer]["median"]
        bare = per_step[f"{layer} no robustness"]["median"]
        full = per_step[f"{layer} no early stop"]["median"]
        c_step, c_bare, c_full = (cpu_step[layer], cpu_step[f"{layer} no robustness"],
                                  cpu_step[f"{layer} no early stop"])
        overhead = None if c_step is None or c_bare is None or c_step == 0 else (c_step - c_bare) / c_step
        depth.append({
            "layer": layer,
            "step_s": step,
            "step_p25_s": per_step[layer]["p25"],
            "step_p75_s": per_step[layer]["p75"],
            "steps_per_s": ratio(1.0, step),
            "projected_256_s": None if step is None else step * 256,
            "no_robustness_step_s": bare,
            "no_early_stop_step_s": full,
            "cpu_step_s": c_step,
            "cpu_no_robustness_step_s": c_bare,
            "cpu_no_early_stop_step_s": c_full,
            "robustness_overhead": overhead,
            "robustness_overhead_wall": None if step is None or bare is None else (step - bare) / step,
            "robustness_pass": None if overhead is None else overhead <= TARGET_OVERHEAD,
            "early_stop_speedup": ratio(c_full, c_step),
            "early_stop_speedup_wall": ratio(full, step),
        })
    full_runs, full_cpu, lucid_runs = [], [], []
    for _ in range(2):
        t0, c0 = clock(), time.process_time()
        result = core.visualize(model, full_layer, 0, size=size, steps=full_steps, seed=0)
        full_runs.append(clock() - t0)
        full_cpu.append(time.process_time() - c0)
        t0 = clock()
        with _lucid_view():
            core.visualize(model, full_layer, 0, size=size, steps=full_steps, seed=0)
        lucid_runs.append(clock() - t0)
    full_s = min(full_runs)
    return {
        "model": "resnet18 (random weights, seed 0)",
        "size": size,
        "steps_per_variant": steps,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
        "transformed_size": size,
        "lucid_size": size + 2 * PAD - 8 - 4,
        "by_depth": depth,
        "full_run": {
            "layer": full_layer, "steps": full_steps, "seconds": full_s, "all_runs_s": full_runs,
            "cpu_seconds": min(full_cpu), "target_s": TARGET_SECONDS, "pass": full_s <= TARGET_SECONDS,
            "final_activation": float(result.activation[-1]),
            "lucid_view_s": min(lucid_runs), "lucid_view_all_runs_s": lucid_runs,
            "lucid_view_ratio": ratio(min(lucid_runs), full_s),
        },
        "view_quality": view_quality(steps=full_steps, size=size, cases=quality_cases),
    }
