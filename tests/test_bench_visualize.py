"""Smoke test of bench/visualize.py: its smallest configuration, the structure of the results, never a timing."""

from __future__ import annotations

import json

import torch

from bench import run as bench_run
from bench import visualize as bench_visualize


def test_visualize_benchmark_smallest_configuration() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = bench_visualize.run(rounds=1, steps=2, size=64, full_steps=2, layers=("conv1", "layer1"),
                                     full_layer="layer1", quality_cases=(("block1.relu1", 3, "channel"),))
    finally:
        torch.set_num_threads(threads)
    json.dumps(result)
    assert [d["layer"] for d in result["by_depth"]] == ["conv1", "layer1"]
    for row in result["by_depth"]:
        for key in ("step_s", "no_robustness_step_s", "no_early_stop_step_s", "cpu_step_s", "cpu_no_robustness_step_s"):
            assert isinstance(row[key], float) and row[key] > 0
        assert isinstance(row["robustness_overhead"], float) and isinstance(row["robustness_pass"], bool)
    assert result["full_run"]["steps"] == 2 and isinstance(result["full_run"]["pass"], bool)
    assert isinstance(result["full_run"]["lucid_view_s"], float) and result["full_run"]["lucid_view_s"] > 0
    (quality,) = result["view_quality"]
    assert quality["layer"] == "block1.relu1" and isinstance(quality["ratio"], float)
    assert bench_visualize.core.apply_grid.__name__ == "apply_grid", "the patched step is restored"
    report = {"date": "d", "quick": True, "machine": {"cpu": "c", "cores": 2, "usable_cores": 2,
              "load_average": [0, 0, 0], "python": "3", "torch": "t", "torch_threads": 1,
              "torch_interop_threads": 1, "torchvision": "v", "plotly": "p", "streamlit": "s", "numpy": "n"},
              "results": {"visualize": result}, "seconds": 1.0, "command": "python -m bench.run"}
    text = bench_run.markdown(report)
    assert "### 8 · Feature visualization" in text and "| conv1 |" in text and "| block1.relu1 | 3 | channel |" in text
