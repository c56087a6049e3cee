"""Extraction overhead against the physical limit: a bare forward pass.

For each model (random seeded weights: nothing to download) and each layer set (the default layer, one
layer per stage, every spatial layer), one round times, in rotating order:

- ``forward``            the module on a ready tensor, ``torch.inference_mode()`` (the physical limit);
- ``preprocess+forward`` ``model.preprocess(image)`` then the same forward (what ``extract`` must do: the
  headline baseline, since ``extract`` takes a PIL image);
- ``extract``            ``featviz_core.layers.extract(model, image, layers)``;
- ``keep`` / ``keep+clone`` (sets of more than 4 layers) preprocess + forward with forward hooks that
  keep every chosen output, without / with copies of the outputs a later in-place op overwrites: the
  physical limit of *keeping* that many outputs, so extract's cost splits into keeping, copying, the rest;
- ``fx``                 torchvision's ``create_feature_extractor`` on the same layers (built once, outside
  timing), called on ``model.preprocess(image)`` under ``inference_mode``.

Medians over interleaved rounds; the headline is ``extract / (preprocess+forward)`` (target <= 1.05).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from featviz_core import LoadedModel, default_layer, extract, list_layers, load_torchvision
from featviz_core.layers import ActivationRecorder, parse_layer_name

from .common import bare_passes, interleaved, ratio, summary

__all__ = ["TARGET", "bench_image", "fx_nodes", "layer_sets", "measure_model", "run"]

TARGET = 1.05
DEFAULT_MODELS = ("resnet18", "resnet50")


def bench_image(seed: int = 0, size: tuple[int, int] = (500, 375)) -> Image.Image:
    """A fixed random RGB photo-sized image (resized and cropped to 224 by the model's preprocessing)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8), "RGB")


def layer_sets(model: LoadedModel) -> dict[str, list[str]]:
    """``1 layer`` (the default layer), ``4 layers`` (one per stage where the model has stages, else four
    evenly spaced spatial layers) and ``all spatial`` (every spatial entry of list_layers)."""
    spatial = [info for info in list_layers(model) if info.spatial]
    names = [info.name for info in spatial]
    stages = [n for n in ("layer1", "layer2", "layer3", "layer4") if n in names]
    if len(stages) != 4:
        step = max(1, len(names) // 4)
        stages = names[step - 1 :: step][:4]
    return {"1 layer": [default_layer(model)], "4 layers": stages, "all spatial": names}


def fx_nodes(module: torch.nn.Module, names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Map featviz layer names to torchvision FX node names: ``{fx_node: featviz_name}`` and the unmapped.

    A leaf module's k-th call is node ``name`` (k = 1) or ``name_{k-1}`` (``layer1.0.relu#2`` ->
    ``layer1.0.relu_1``). A container (``layer1``, ``layer1.0``) is traced through, so its output is the
    last node inside it. Several featviz names can share one node (``layer1`` and ``layer1.1.relu#2``);
    the first one keeps it.
    """
    from torchvision.models.feature_extraction import get_graph_node_names

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, nodes = get_graph_node_names(module)
    known = set(nodes)
    mapping: dict[str, str] = {}
    unmapped: list[str] = []
    for name in names:
        module_name, call = parse_layer_name(name)
        node = module_name if call == 1 else f"{module_name}_{call - 1}"
        if node not in known:
            inside = [n for n in nodes if n.startswith(module_name + ".")]
            node = inside[-1] if inside and call == 1 else ""
        if not node:
            unmapped.append(name)
            continue
        mapping.setdefault(node, name)
    return mapping, unmapped


def _fx_extractor(module: torch.nn.Module, nodes: dict[str, str]) -> torch.nn.Module:
    from torchvision.models.feature_extraction import create_feature_extractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        extractor = create_feature_extractor(module, return_nodes=dict(nodes))
    return extractor.eval()


def _recording(
    model: LoadedModel, image: Image.Image, names: list[str], clone: bool | set[str]
) -> Callable[[], None]:
    """preprocess + forward with hooks that keep every chosen output (cloning ``clone``): what keeping
    the outputs costs by itself, without extract's bookkeeping."""

    def run() -> None:
        tensor = model.preprocess(image)
        with ActivationRecorder(model.module, names, clone=clone, lock=model.lock), torch.inference_mode():
            model.module(tensor)

    return run


def measure_model(
    model: LoadedModel,
    image: Image.Image,
    sets: dict[str, list[str]] | None = None,
    rounds: int = 30,
    warmup: int = 2,
    fx: bool = True,
) -> dict[str, Any]:
    """Interleaved timings of one model: the two bare baselines and, per layer set, extract and fx."""
    sets = sets if sets is not None else layer_sets(model)
    module = model.module.eval()
    tensor, forward, pre_forward = bare_passes(module, lambda: model.preprocess(image))

    def preprocess_only() -> None:
        model.preprocess(image)

    variants: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "preprocess+forward": pre_forward,
        "preprocess": preprocess_only,
    }
    fx_info: dict[str, Any] = {}
    for label, names in sets.items():
        variants[f"extract[{label}]"] = (lambda names=names: extract(model, image, names))
        if len(names) > 4:  # where extract misses the target: split its cost
            overwritten = {i.name for i in list_layers(model) if i.name in set(names) and i.overwritten}
            variants[f"keep[{label}]"] = _recording(model, image, names, clone=False)
            variants[f"keep+clone[{label}]"] = _recording(model, image, names, clone=overwritten)
        if fx:
            nodes, unmapped = fx_nodes(module, names)
            fx_info[label] = {"nodes": len(nodes), "unmapped": unmapped}
            if nodes:
                extractor = _fx_extractor(module, nodes)

                def run_fx(extractor: torch.nn.Module = extractor) -> None:
                    t = model.preprocess(image)
                    with torch.inference_mode():
                        extractor(t)

                variants[f"fx[{label}]"] = run_fx
    times = interleaved(variants, rounds=rounds, warmup=warmup)
    stats = {name: summary(samples) for name, samples in times.items()}
    bare = stats["preprocess+forward"]["median"]
    bare_nopre = stats["forward"]["median"]
    per_set: dict[str, Any] = {}
    for label, names in sets.items():
        ext = stats[f"extract[{label}]"]["median"]
        fxm = stats.get(f"fx[{label}]", {}).get("median")
        ratio_bare = ratio(ext, bare)
        per_set[label] = {
            "layers": len(names),
            "layer_names": names if len(names) <= 8 else names[:3] + ["..."] + names[-2:],
            "extract_s": ext,
            "fx_s": fxm,
            "extract_over_bare": ratio_bare,
            "extract_over_forward_only": ratio(ext, bare_nopre),
            "fx_over_bare": ratio(fxm, bare),
            "extract_over_fx": ratio(ext, fxm),
            "extract_minus_bare_ms": (ext - bare) * 1e3 if ext is not None and bare is not None else None,
            "target": TARGET,
            "pass": ratio_bare is not None and ratio_bare <= TARGET,
            "fx_mapping": fx_info.get(label),
            "keep_refs_s": stats.get(f"keep[{label}]", {}).get("median"),
            "keep_refs_and_clone_s": stats.get(f"keep+clone[{label}]", {}).get("median"),
            "extract_over_keep_and_clone": ratio(ext, stats.get(f"keep+clone[{label}]", {}).get("median")),
        }
    return {
        "model": model.name,
        "input_shape": list(tensor.shape),
        "rounds": rounds,
        "forward_s": bare_nopre,
        "preprocess_s": stats["preprocess"]["median"],
        "preprocess_forward_s": bare,
        "sets": per_set,
        "timings": stats,
    }


def run(
    rounds: int = 30,
    models: Sequence[str] = DEFAULT_MODELS,
    only_sets: Sequence[str] | None = None,
    fx: bool = True,
    warmup: int = 2,
) -> dict[str, Any]:
    """Every model in ``models`` (random seeded weights), 224 px; ``only_sets`` limits the layer sets."""
    image = bench_image()
    results = []
    for name in models:
        model = load_torchvision(name, weights=None)
        sets = layer_sets(model)
        if only_sets is not None:
            sets = {k: v for k, v in sets.items() if k in only_sets}
        results.append(measure_model(model, image, sets, rounds=rounds, warmup=warmup, fx=fx))
    return {
        "torch_threads": torch.get_num_threads(),
        "image_size": list(image.size),
        "target": f"extract <= {TARGET}x (preprocess + forward)",
        "models": results,
    }
