"""The ONNX benchmark's smallest configuration runs and reports both paths (structure, never timings)."""

from __future__ import annotations

from bench import onnx as onnx_bench
from bench.run import markdown


def test_onnx_bench_smallest_configuration() -> None:
    result = onnx_bench.run(rounds=1, warmup=0)
    assert set(result["medians_s"]) == {
        "ort bare",
        "extract[onnxruntime]",
        "torch bare",
        "extract[converted]",
    }
    assert all(v is not None and v > 0 for v in result["medians_s"].values())
    assert result["extract_ort_over_ort_bare"] > 0 and result["extract_converted_over_torch_bare"] > 0
    report = {
        "date": "now",
        "quick": True,
        "machine": {},
        "results": {"onnx": result},
        "seconds": 1.0,
        "command": "python -m bench.run --only onnx",
    }
    report["machine"] = {
        k: "?"
        for k in (
            "cpu",
            "cores",
            "usable_cores",
            "load_average",
            "python",
            "torch",
            "torch_threads",
            "torch_interop_threads",
            "torchvision",
            "plotly",
            "streamlit",
            "numpy",
        )
    }
    assert "· ONNX files: extracting one layer" in markdown(report)
