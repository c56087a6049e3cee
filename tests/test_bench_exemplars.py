"""Smoke test of the exemplars benchmark: the smallest configuration; structure only, never a timing."""

from __future__ import annotations

import json

from bench import exemplars
from bench import run as bench_run


def test_exemplars_benchmark_smallest_configuration() -> None:
    result = exemplars.run(images=6, rounds=1, warmup=0, batch_size=4, workers=0)
    json.dumps(result)
    assert result["images"] == 6 and result["bare"]["images_per_s"] > 0
    last = result["layers"]["last spatial layer"]
    assert last["layer"] == exemplars.LAST_LAYER and isinstance(last["pass"], bool)
    assert last["throughput_over_bare"] > 0 and last["receptive_field_first_s"] >= 0
    text = "\n".join(bench_run._exemplars_md(result))
    assert "throughput / bare" in text and exemplars.LAST_LAYER in text
