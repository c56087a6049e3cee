"""Where it looks: the cost of the CAM methods, of Score-CAM's batches, of the sanity check and of the report.

* methods: each fast method on resnet18 (seeded random weights, 224 px) at ``layer4``, against the floor
  (a bare forward pass + ``torch.autograd.grad`` through one plain hook) and against pytorch-grad-cam's
  Grad-CAM (when installed) on the same layer;
* Score-CAM's inner loop (``CamMethod.forward_scores``) for ``passes`` masked inputs at several batch sizes:
  time per pass, and batch / batch-1 ratios (the lock is taken once per batch);
* the sanity check of a map already computed (the copy, the second map, the two numbers) / one map;
* the report: build time and bytes (plotly.js alone is about 4.8 MB of it).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from PIL import Image

from featviz_core import cam, extract, layer_info, load_demo, load_torchvision, sanity_check
from featviz_core.cam import METHODS
from featviz_core.cam.methods import ScoreCAM
from featviz_core.report import report_html
from featviz_core.report.html import plotly_js

from .common import clock, interleaved, ratio, summary

FAST = [name for name, cls in METHODS.items() if not cls.many_passes]


def _image(size: int = 256) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def _floor(model: Any, image: Image.Image, layer: str) -> None:
    """The least a gradient map needs: preprocess, a forward pass keeping the layer, one gradient."""
    module = dict(model.module.named_modules())[layer]
    kept: list[torch.Tensor] = []

    def hook(_m: Any, _i: Any, out: torch.Tensor) -> torch.Tensor:
        leaf = out.detach().requires_grad_(True)
        kept.append(leaf)
        return leaf.clone()

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model.module(model.preprocess(image))
            torch.autograd.grad(logits[0].max(), kept[0])
    finally:
        handle.remove()


def _methods(rounds: int, warmup: int, layer: str) -> dict[str, Any]:
    model = load_torchvision("resnet18", weights=None)
    image = _image()
    variants: dict[str, Any] = {"floor": lambda: _floor(model, image, layer)}
    variants.update({m: (lambda m=m: cam(model, image, layer, None, m)) for m in FAST})
    try:
        from pytorch_grad_cam import GradCAM

        net = copy.deepcopy(model.module)
        library = GradCAM(net, [dict(net.named_modules())[layer]])
        variants["pytorch-grad-cam gradcam"] = lambda: library(model.preprocess(image), None)
    except ImportError:  # a dev dependency only
        library = None
    times = {k: summary(v) for k, v in interleaved(variants, rounds, warmup).items()}
    floor = times["floor"]["median"]
    out = {"model": "resnet18", "layer": layer, "rounds": rounds, "times": times,
           "over_floor": {m: ratio(times[m]["median"], floor) for m in FAST}}
    if library is not None:
        out["gradcam_over_library"] = ratio(times["gradcam"]["median"], times["pytorch-grad-cam gradcam"]["median"])
    return out


def _score_batches(passes: int, batches: tuple[int, ...], rounds: int, layer: str) -> dict[str, Any]:
    model = load_torchvision("resnet18", weights=None)
    image = _image()
    runners = {}
    for size in batches:
        method = ScoreCAM(model, layer, batch_size=size)
        method.input = model.preprocess(image)
        method.target = cam(model, image, layer, None, "gradcam").target  # any class: the cost is the same
        runners[f"batch {size}"] = (lambda m=method: m.forward_scores(passes, lambda a, b, m=m: m.input.expand(b - a, -1, -1, -1)))
    times = {k: summary(v) for k, v in interleaved(runners, rounds, warmup=1).items()}
    per_pass = {k: (t["median"] / passes if t["median"] is not None else None) for k, t in times.items()}
    base = per_pass.get(f"batch {batches[0]}")
    return {"model": "resnet18", "layer": layer, "passes": passes, "times": times, "per_pass_s": per_pass,
            "over_batch_1": {k: ratio(v, base) for k, v in per_pass.items()}}


def _sanity(rounds: int) -> dict[str, Any]:
    model = load_torchvision("resnet18", weights=None)
    image = _image()
    out: dict[str, Any] = {"model": "resnet18", "layers": {}}
    for layer in ("layer4", "layer3"):
        original = cam(model, image, layer)
        times = interleaved({
            "map": lambda layer=layer: cam(model, image, layer),
            "sanity_check": lambda layer=layer, o=original: sanity_check(model, image, layer, original=o),
        }, rounds, warmup=1)
        t = {k: summary(v) for k, v in times.items()}
        out["layers"][layer] = {"times": t, "check_over_map": ratio(t["sanity_check"]["median"], t["map"]["median"])}
    return out


def _report(rounds: int) -> dict[str, Any]:
    demo = load_demo()
    resnet = load_torchvision("resnet18", weights=None)
    out: dict[str, Any] = {"plotly_js_bytes": len(plotly_js().encode()), "cases": []}
    for model, layer in ((demo, "block2.relu1"), (resnet, "layer1.0.relu"), (resnet, "layer4")):
        image = _image()
        maps = extract(model, image, [layer]).activations[layer]
        result = cam(model, image, "layer4" if model is resnet else "block3")
        check = sanity_check(model, image, result.layer, original=result)
        info = layer_info(model, layer)
        sizes: list[int] = []
        times = []
        for _ in range(rounds):
            t0 = clock()
            data = report_html(model, info, maps, view=model.model_view(image), image_name="bench.png",
                               cam=result, sanity=check, version="bench")
            times.append(clock() - t0)
            sizes.append(len(data))
        out["cases"].append({"model": model.name, "layer": layer, "shape": list(maps.shape),
                             "build": summary(times), "bytes": sizes[-1],
                             "bytes_without_plotly_js": sizes[-1] - out["plotly_js_bytes"]})
    return out


def run(rounds: int = 7, warmup: int = 1, passes: int = 64, batches: tuple[int, ...] = (1, 16, 32),
        layer: str = "layer4") -> dict[str, Any]:
    return {
        "methods": _methods(rounds, warmup, layer),
        "score_cam": _score_batches(passes, batches, max(1, rounds // 2), layer),
        "sanity": _sanity(max(1, rounds // 2)),
        "report": _report(max(1, rounds // 2)),
        "torch_threads": torch.get_num_threads(),
    }


def markdown(r: dict[str, Any], ms: Any, x: Any) -> list[str]:
    if "skipped" in r:
        return ["### 7 · Where it looks", "", f"Skipped: {r['skipped']}.", ""]
    m = r["methods"]
    lines = [
        f"### 7 · Where it looks (resnet18, random weights, 224 px, {m['layer']}; medians)",
        "",
        "floor = preprocess + forward keeping the layer + one `torch.autograd.grad` (what any gradient map needs).",
        "",
        "| method | ms | / floor |",
        "|---|---:|---:|",
        f"| floor | {ms(m['times']['floor']['median'])} | 1.00× |",
    ]
    lines += [f"| {name} | {ms(m['times'][name]['median'])} | {x(m['over_floor'][name])} |" for name in FAST]
    if "gradcam_over_library" in m:
        lines.append(f"| pytorch-grad-cam Grad-CAM | {ms(m['times']['pytorch-grad-cam gradcam']['median'])} | "
                     f"(featviz / it: {x(m['gradcam_over_library'])}) |")
    s = r["score_cam"]
    lines += ["", f"Score-CAM's forward passes ({s['passes']} masked inputs, lock taken once per batch):", "",
              "| batch | ms per pass | / batch 1 |", "|---|---:|---:|"]
    lines += [f"| {k} | {ms(v)} | {x(s['over_batch_1'][k])} |" for k, v in s["per_pass_s"].items()]
    lines += ["", "Sanity check of a map already computed (copy of the re-initialised layers + the second map):", "",
              "| layer | one map ms | check ms | check / map |", "|---|---:|---:|---:|"]
    for layer, d in r["sanity"]["layers"].items():
        lines.append(f"| {layer} | {ms(d['times']['map']['median'])} | {ms(d['times']['sanity_check']['median'])} "
                     f"| {x(d['check_over_map'])} |")
    rep = r["report"]
    lines += ["", f"Report (plotly.js embedded once: {rep['plotly_js_bytes'] / 1e6:.2f} MB):", "",
              "| model | layer | shape | build ms | MB | MB without plotly.js |", "|---|---|---|---:|---:|---:|"]
    for c in rep["cases"]:
        lines.append(f"| {c['model']} | {c['layer']} | {'×'.join(map(str, c['shape']))} | {ms(c['build']['median'])} "
                     f"| {c['bytes'] / 1e6:.2f} | {c['bytes_without_plotly_js'] / 1e6:.3f} |")
    lines.append("")
    return lines
