"""The transformer benchmark's smallest configuration (timm's test_vit, 160 px): every variant timed, ratios to the
bare pass, the token map on the patch grid and the Markdown rows (structure, never timings)."""

from __future__ import annotations

import json

from bench import transformers
from bench.run import _ms, _x


def test_transformers_bench_smallest_configuration() -> None:
    result = transformers.run(rounds=1, warmup=0, models=("test_vit",))
    json.dumps(result)
    (row,) = result["models"]
    assert row["model"] == "test_vit" and row["input_shape"] == [1, 3, 160, 160]
    assert row["grid"] == [10, 10] and row["prefix_tokens"] == ["class token"] and row["tokens"] == 101
    assert row["map_shape"][1:] == [10, 10]  # the default token layer, reshaped onto the patch grid
    assert set(row["medians_s"]) == set(transformers.VARIANTS)
    assert all(isinstance(v, float) and v > 0 for v in row["medians_s"].values())
    assert row["over_bare"]["preprocess+forward"] == 1.0 and row["cpu_over_bare"]["preprocess+forward"] == 1.0
    assert all(row["cpu_timings"][name]["n"] == 1 for name in transformers.VARIANTS)
    assert set(row["pass"]) == {"extract", "attention cls", "attention rollout"}
    assert all(isinstance(v, bool) for v in row["pass"].values())
    text = "\n".join(transformers.markdown(result, _ms, _x))
    assert "### 11 · Vision transformers" in text
    assert text.count("| test_vit | 160×160 | 101 (1 + 10×10) |") == len(transformers.VARIANTS)
    assert f"| extract (`{row['layer']}` → " in text
