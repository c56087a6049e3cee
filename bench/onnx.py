"""ONNX files: what extracting one layer costs on each of the two ways featviz runs an ONNX model.

resnet18 with seeded random weights, exported by torch (legacy exporter, opset 17), 224 px, the default
layer. One round times, in rotating order:

- ``ort bare``            ``model.preprocess(image)`` + ``session.run`` of a plain onnxruntime session of the
  same file, with featviz's session options (the physical limit of the onnxruntime path);
- ``extract[onnxruntime]`` ``extract`` on the model loaded with the conversion switched off (the fallback
  that runs onnxruntime and asks it for the layer as an extra output);
- ``torch bare``          ``model.preprocess(image)`` + a forward pass of the converted module;
- ``extract[converted]``  ``extract`` on the model as ``load_onnx`` gives it (converted to PyTorch).

Headlines: ``extract[onnxruntime] / ort bare`` and ``extract[converted] / torch bare`` (targets <= 1.05),
and ``torch bare / ort bare`` (how the converted module's speed compares with onnxruntime's). The ratios of
the fastest rounds are reported beside the medians: on a busy machine they are the steadier estimate.
"""

from __future__ import annotations

import io
import warnings
from typing import Any
from unittest import mock

import onnxruntime as ort
import torch

import featviz_core.models.sources.onnx as onnx_source
from featviz_core import default_layer, extract, load_onnx, load_torchvision
from featviz_core.models.sources.onnx_runtime import session_options
from featviz_core.models.sources.onnx_torch import UnsupportedOp

from .common import interleaved, ratio, summary
from .extraction import bench_image

__all__ = ["TARGET", "export_resnet18", "run"]

TARGET = 1.05


def export_resnet18() -> bytes:
    module = load_torchvision("resnet18", weights=None).module
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 224, 224),), buffer, opset_version=17, dynamo=False,
                          input_names=["image"])  # fmt: skip
    return buffer.getvalue()


def _refuse(*_args: Any, **_kwargs: Any) -> Any:
    raise UnsupportedOp("conversion switched off for the benchmark")


def run(rounds: int = 30, warmup: int = 3) -> dict[str, Any]:
    data = export_resnet18()
    converted = load_onnx(data, "resnet18.onnx")
    with mock.patch.object(onnx_source, "convert", _refuse):
        runtime = load_onnx(data, "resnet18.onnx")
    assert converted.supports_gradients and not runtime.supports_gradients
    image = bench_image()
    layer = default_layer(converted)
    session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])

    def ort_bare() -> None:
        session.run(None, {"image": converted.preprocess(image).numpy()})

    def torch_bare() -> None:
        tensor = converted.preprocess(image)
        with torch.inference_mode():
            converted.module(tensor)

    extract(runtime, image, [layer])  # builds the session with the extra output once, outside timing
    variants = {
        "ort bare": ort_bare,
        "extract[onnxruntime]": lambda: extract(runtime, image, [layer]),
        "torch bare": torch_bare,
        "extract[converted]": lambda: extract(converted, image, [layer]),
    }
    times = interleaved(variants, rounds=rounds, warmup=warmup)
    stats = {name: summary(samples) for name, samples in times.items()}
    med = {name: s["median"] for name, s in stats.items()}
    low = {name: s["min"] for name, s in stats.items()}
    ort_ratio = ratio(med["extract[onnxruntime]"], med["ort bare"])
    torch_ratio = ratio(med["extract[converted]"], med["torch bare"])
    return {
        "model": "resnet18 (torch legacy export, opset 17)",
        "layer": layer,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "medians_s": med,
        "extract_ort_over_ort_bare": ort_ratio,
        "extract_converted_over_torch_bare": torch_ratio,
        "torch_bare_over_ort_bare": ratio(med["torch bare"], med["ort bare"]),
        "minimums_s": low,  # robust to a busy machine: the fastest round of each variant
        "extract_ort_over_ort_bare_min": ratio(low["extract[onnxruntime]"], low["ort bare"]),
        "extract_converted_over_torch_bare_min": ratio(low["extract[converted]"], low["torch bare"]),
        "target": TARGET,
        "pass_ort": ort_ratio is not None and ort_ratio <= TARGET,
        "pass_converted": torch_ratio is not None and torch_ratio <= TARGET,
        "timings": stats,
    }
