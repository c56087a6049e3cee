"""Vision transformers: token-map extraction and attention maps against a bare forward pass (issue #20, point 7).

For each model (timm, seeded random weights through ``load_timm(name, pretrained=False)``: nothing to download),
one round times, in rotating order:

- ``forward``             the module on a ready tensor under ``torch.inference_mode()`` (the physical limit);
- ``preprocess+forward``  ``model.preprocess(image)`` then the same forward: the baseline (every variant below
  takes a PIL image);
- ``extract``             ``featviz_core.extract(model, image, [default_layer(model)])``: the middle block's tokens
  reshaped to the patch grid (D × H × W) plus the prefix tokens;
- ``attention cls``       ``featviz_core.attention(model, image, method="cls")``: the class token's attention per
  head at the last block (that one block runs its non-fused path);
- ``attention rollout``   ``featviz_core.attention(model, image, method="rollout")``: every block non-fused, the
  flow from the patches to the class token through all of them.

Medians over interleaved rounds; ratios of medians to ``preprocess+forward``, from wall-clock time and from the
process's CPU time (all threads), which a shared machine barely changes. Targets: extract <= 1.05x, rollout (and
the one-block "cls" map) <= 1.5x.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from featviz_core import LoadedModel, attention, default_layer, extract, load_timm
from featviz_core.attention import attention_blocks

from .common import bare_passes, interleaved, ratio, summary
from .extraction import bench_image

__all__ = ["ATTENTION_TARGET", "DEFAULT_MODELS", "EXTRACT_TARGET", "markdown", "measure", "run"]

EXTRACT_TARGET = 1.05
ATTENTION_TARGET = 1.5
DEFAULT_MODELS = ("vit_small_patch16_224", "vit_small_patch14_dinov2")  # 224 px; DINOv2-small at its 518 px
VARIANTS = ("forward", "preprocess+forward", "extract", "attention cls", "attention rollout")


def measure(model: LoadedModel, rounds: int, warmup: int) -> dict[str, Any]:
    """Interleaved timings of one transformer: the two bare baselines, extract, the two attention methods."""
    image = bench_image()
    layer = default_layer(model)
    setup = attention_blocks(model)
    if setup is None:
        raise ValueError(f"{model.name} has no class-token attention to measure")
    module = model.module.eval()
    tensor, forward, pre_forward = bare_passes(module, lambda: model.preprocess(image))

    variants: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "preprocess+forward": pre_forward,
        "extract": lambda: extract(model, image, [layer]),
        "attention cls": lambda: attention(model, image, method="cls"),
        "attention rollout": lambda: attention(model, image, method="rollout"),
    }
    cpu: dict[str, list[float]] = {name: [] for name in variants}

    def cpu_timed(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def timed() -> None:
            start = time.process_time()
            fn()
            cpu[name].append(time.process_time() - start)

        return timed

    times = interleaved({n: cpu_timed(n, f) for n, f in variants.items()}, rounds=rounds, warmup=warmup)
    stats = {name: summary(samples) for name, samples in times.items()}
    cpu_stats = {name: summary(samples[warmup:]) for name, samples in cpu.items()}
    bare = stats["preprocess+forward"]["median"]
    over = {name: ratio(stats[name]["median"], bare) for name in VARIANTS}
    cpu_over = {name: ratio(cpu_stats[name]["median"], cpu_stats["preprocess+forward"]["median"]) for name in VARIANTS}
    shown = extract(model, image, [layer])
    targets = {"extract": EXTRACT_TARGET, "attention cls": ATTENTION_TARGET, "attention rollout": ATTENTION_TARGET}
    return {
        "model": model.name,
        "input_shape": list(tensor.shape),
        "layer": layer,
        "map_shape": list(shown.activations[layer].shape),
        "prefix_tokens": list(setup.prefix),
        "grid": list(setup.grid),
        "blocks": len(setup.blocks),
        "tokens": len(setup.prefix) + setup.grid[0] * setup.grid[1],
        "rounds": rounds,
        "timings": stats,
        "medians_s": {name: stats[name]["median"] for name in VARIANTS},
        "over_bare": over,
        "cpu_timings": cpu_stats,
        "cpu_over_bare": cpu_over,
        "targets": targets,
        "pass": {name: over[name] is not None and over[name] <= limit for name, limit in targets.items()},
    }


def run(rounds: int = 15, warmup: int = 2, models: Sequence[str] = DEFAULT_MODELS) -> dict[str, Any]:
    """Every model in ``models`` (timm names, seeded random weights) at its own input size."""
    results = [measure(load_timm(name, pretrained=False), rounds=rounds, warmup=warmup) for name in models]
    return {
        "torch_threads": torch.get_num_threads(),
        "target": f"extract <= {EXTRACT_TARGET}x, attention <= {ATTENTION_TARGET}x (preprocess + forward)",
        "models": results,
    }


def markdown(r: dict[str, Any], ms: Callable[[float | None], str], x: Callable[..., str]) -> list[str]:
    """Section 11 of ``latest.md``: one row per model and variant."""
    lines = [
        "### 11 · Vision transformers: token maps and attention (timm, random seeded weights; medians)",
        "",
        f"Targets: {r['target']}. bare = `model.preprocess(image)` + forward under `inference_mode`; extract = the "
        "default layer (the middle block's tokens on the patch grid); cls = the class token's attention per head at "
        "the last block; rollout = the flow through every block.",
        "",
        "| model | input | tokens (prefix + grid) | variant | ms (p25–p75) | / bare | CPU ms | CPU / bare "
        "| target (wall) |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for m in r["models"]:
        size = "×".join(str(s) for s in m["input_shape"][2:])
        tokens = f"{m['tokens']} ({len(m['prefix_tokens'])} + {m['grid'][0]}×{m['grid'][1]})"
        for name in VARIANTS:
            t = m["timings"][name]
            target = m["targets"].get(name)
            verdict = "–" if target is None else f"≤ {target:.2f}×: {'pass' if m['pass'][name] else '**FAIL**'}"
            label = f"{name} (`{m['layer']}` → {'×'.join(str(s) for s in m['map_shape'])})" if name == "extract" \
                else name
            lines.append(f"| {m['model']} | {size} | {tokens} | {label} | {ms(t['median'])} "
                         f"({ms(t['p25'])}–{ms(t['p75'])}) | {x(m['over_bare'][name], 3)} "
                         f"| {ms(m['cpu_timings'][name]['median'])} | {x(m['cpu_over_bare'][name], 3)} | {verdict} |")
    rounds = r["models"][0]["rounds"] if r["models"] else 0
    lines += ["", f"{rounds} interleaved rounds per variant; torch threads {r['torch_threads']}. CPU = CPU-seconds of "
              "the process (all threads) per call.", ""]
    return lines
