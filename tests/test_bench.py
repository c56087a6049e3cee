"""Smoke tests of the benchmarks: the smallest configuration of each measurement, tiny repeats.

They check the structure of the results, never the timings (those belong to ``python -m bench.run``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import browser, cams, common, contention, extraction, first_view, floor, memory, rendering
from bench import run as bench_run
from featviz_core import load_torchvision


def _is_seconds(value: object) -> bool:
    return isinstance(value, float) and value >= 0


def test_interleaved_runs_every_variant_every_round_in_rotating_order() -> None:
    calls: list[str] = []
    times = common.interleaved({n: (lambda n=n: calls.append(n)) for n in "abc"}, rounds=3, warmup=1)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    s = common.summary([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["n"] == 3
    assert common.summary([])["median"] is None
    assert common.ratio(1.0, 0.0) is None and common.ratio(1.0, 2.0) == 0.5


def test_machine_says_what_the_numbers_ran_on() -> None:
    m = common.machine()
    assert m["cores"] >= 1 and m["torch_threads"] >= 1 and m["torch"] and m["cpu"]


def test_fx_names_of_resnet_calls_and_containers() -> None:
    model = load_torchvision("resnet18", weights=None)
    nodes, unmapped = extraction.fx_nodes(model.module, ["layer1.0.relu#2", "layer1.0.relu", "layer1", "conv1"])
    assert unmapped == []
    assert nodes["layer1.0.relu_1"] == "layer1.0.relu#2"
    assert nodes["layer1.0.relu"] == "layer1.0.relu"
    assert nodes["layer1.1.relu_1"] == "layer1"  # a container's output is its last node
    assert nodes["conv1"] == "conv1"
    sets = extraction.layer_sets(model)
    assert sets["4 layers"] == ["layer1", "layer2", "layer3", "layer4"]
    assert len(sets["1 layer"]) == 1 and len(sets["all spatial"]) > 4


def test_extraction_smallest_configuration() -> None:
    result = extraction.run(rounds=1, warmup=0, models=("resnet18",), only_sets=("1 layer",))
    json.dumps(result)
    (model,) = result["models"]
    assert model["model"] == "resnet18" and model["input_shape"] == [1, 3, 224, 224]
    for key in ("forward_s", "preprocess_s", "preprocess_forward_s"):
        assert _is_seconds(model[key])
    row = model["sets"]["1 layer"]
    assert row["layers"] == 1 and row["fx_mapping"]["unmapped"] == []
    assert _is_seconds(row["extract_s"]) and _is_seconds(row["fx_s"])
    assert isinstance(row["extract_over_bare"], float) and isinstance(row["pass"], bool)


def test_rendering_smallest_configuration() -> None:
    result = rendering.run(rounds=1, warmup=0, shapes=[(8, 7, 7)])
    json.dumps(result)
    (shape,) = result["shapes"]
    assert shape["shape"] == [8, 7, 7] and shape["shown_values"] == 8 * 49
    assert set(shape["variants"]) == {"mosaic", "subplots", "matplotlib_png"}
    mosaic = shape["variants"]["mosaic"]
    assert mosaic["payload_escaped_bytes"] >= mosaic["payload_raw_bytes"] > 0
    assert shape["variants"]["matplotlib_png"]["png_bytes"] > 0
    assert {"build_pass", "payload_raw_pass", "payload_escaped_pass"} <= set(shape["targets"])
    assert set(result["mosaic_breakdown_first_shape"]) >= {"z", "customdata"}


def test_cams_smallest_configuration() -> None:
    result = cams.run(rounds=1, warmup=0, passes=4, batches=(1, 2))
    json.dumps(result)
    assert set(result["methods"]["over_floor"]) == set(cams.FAST)
    assert set(result["score_cam"]["per_pass_s"]) == {"batch 1", "batch 2"}
    assert set(result["sanity"]["layers"]) == {"layer4", "layer3"}
    assert all(c["bytes_without_plotly_js"] > 0 for c in result["report"]["cases"])
    assert "### 7 · Where it looks" in "\n".join(cams.markdown(result, bench_run._ms, bench_run._x))


def test_payload_floor_is_base64_of_the_values_plus_the_channel_index() -> None:
    floor = rendering.floor_bytes(64, 56, 56)
    assert floor["values"] == rendering.b64_len(4 * 64 * 56 * 56)
    assert floor["floor"] == floor["values"] + rendering.b64_len(64)
    assert rendering.b64_len(3) == 4 and rendering.b64_len(4) == 8


def test_contention_smallest_configuration() -> None:
    result = contention.run(rounds=1, children=1)
    json.dumps(result)
    assert set(result["policies"]) == {"default", "PASSIVE"}
    for row in result["policies"].values():
        assert _is_seconds(row["idle_s"]) and _is_seconds(row["busy_s"])


def test_plateau_verdicts() -> None:
    jitter = [0.0, 25.0, -20.0, 10.0]
    flat = [100.0 + min(i, 30) + jitter[i % 4] for i in range(101)]
    result = memory.plateau(flat, full_after=32)
    assert result["plateau"] is True and result["uploads_fitted"] == 101 - 35
    growing = [100.0 + 1.3 * i for i in range(101)]  # an image and an extraction kept per upload
    assert memory.plateau(growing, full_after=32)["plateau"] is False
    assert memory.plateau(flat[:40], full_after=32)["plateau"] is None


def test_markdown_report_and_cli(tmp_path, monkeypatch) -> None:
    small = {
        "extraction": lambda: extraction.run(rounds=1, warmup=0, models=("resnet18",), only_sets=("1 layer",)),
        "rendering": lambda: rendering.run(rounds=1, warmup=0, shapes=[(4, 5, 5)], matplotlib=False),
        "browser": lambda: {"skipped": "not in this test"},
        "memory": lambda: {"skipped": "not in this test"},
        "contention": lambda: {"error": "RuntimeError: pretend"},
        "cams": lambda: {"skipped": "not in this test"},
        "first_view": lambda: {"skipped": "not in this test"},
    }
    monkeypatch.setattr(bench_run, "_runners", lambda quick, baseline=None: small)
    assert bench_run.main(["--quick", "--out", str(tmp_path)]) == 1  # a failed section is reported
    report = json.loads((tmp_path / "latest.json").read_text())
    assert set(report["results"]) == set(bench_run.SECTIONS)
    text = (tmp_path / "latest.md").read_text()
    assert "Machine:" in text and "| resnet18 | 1 layer (1) |" in text and "| 4×5×5 |" in text
    assert "Skipped: not in this test." in text and "Failed: `RuntimeError: pretend`" in text
    with pytest.raises(SystemExit):
        bench_run.main(["--only", "nonsense", "--out", str(tmp_path)])


needs_chromium = pytest.mark.skipif(not browser.chromium_available(), reason="Chromium not found")


@pytest.mark.browser
@needs_chromium
def test_browser_smallest_configuration() -> None:
    result = browser.run(repeats=1, blocks=1)
    json.dumps(result)
    data = result["variants"]["as shipped"]
    for key in ("upload_first_map", "layer_change", "colormap_change"):
        (sample,) = data[key]["samples"]
        assert 0 < sample["visible_s"] <= sample["idle_s"]
    assert data["forward_passes"][0]["colormap_changes"] == 0  # a colour change reuses the extraction


@pytest.mark.browser
@needs_chromium
def test_memory_smallest_configuration() -> None:
    result = memory.run(uploads=2, every=1)
    json.dumps(result)
    assert [p["uploads"] for p in result["curve"]] == [0, 1, 2]
    assert all(p["rss_mb"] > 0 for p in result["curve"])
    assert result["analysis"]["plateau"] is None  # too few uploads for a verdict


@pytest.mark.browser
@needs_chromium
def test_first_view_smallest_configuration() -> None:
    chosen = {"featviz run": first_view.variants()["featviz run"]}
    result = first_view.run(runs=1, models=("resnet34",), chosen=chosen)
    json.dumps(result)
    (sample,) = result["first_view"]["featviz run"]["samples"]
    assert sample["heatmap_s"] > 0 and sample["server_start_to_ready_s"] > 0 and sample["rss_mb"] > 0
    assert sample["warm_up"] and "imports" in sample["warm_up"]  # featviz run warmed up before it listened
    switch = result["switch"]["resnet34"]
    (timing,) = switch["samples"]
    assert timing["spinner_s"] is not None and 0 < timing["spinner_s"] < timing["settled_s"]
    assert _is_seconds(switch["steps"]["build_s"]["median"]) and isinstance(result["pass"], bool)
    text = bench_run.markdown({"date": "now", "quick": True, "machine": common.machine(), "seconds": 1.0,
                               "command": "test", "results": {"first_view": result}})
    assert "| featviz run |" in text and "| resnet34 |" in text
    floor_result = result["floor"]  # the bare pages were visited in the same rotation
    assert floor_result["bare_image_s"] > 0 and floor_result["bare_plotly_s"] > 0
    assert isinstance(floor_result["first_picture_pass"], bool) and isinstance(floor_result["interactive_map_pass"], bool)
    assert "first picture vs one `st.image`" in text


def test_the_floor_pages_show_the_first_view_s_own_picture_and_numbers(tmp_path) -> None:
    from featviz_core.figures.preview import still_png

    shown = floor.prepare(tmp_path)
    figure = floor.first_figure()
    same = (tmp_path / "still.png").read_bytes() == still_png(figure)  # no diff of 50 kB of bytes on failure
    assert same, "the bare image page must show the very picture featviz shows first"
    z = np.load(tmp_path / "z.npy")
    assert list(z.shape) == shown["heatmap_shape"] == list(np.asarray(figure.data[0].z).shape)
    assert (tmp_path / ".streamlit" / "config.toml").is_file()  # the app's own Streamlit settings
    for page in ("image_page.py", "plotly_page.py"):
        source = (tmp_path / page).read_text()
        compile(source, page, "exec")
        assert "torch" not in source and "featviz" not in source.split('"""', 2)[2]  # bare: Streamlit and numbers only


def test_floor_goals_hold_featviz_to_the_bare_pages() -> None:
    def row(key: str, value: float) -> dict:
        return {key: {"median": value}}

    first_view_medians = {"featviz run": {**row("first_map_s", 1.5), **row("heatmap_s", 2.5)},
                          floor.IMAGE_LABEL: row("still_s", 1.0), floor.PLOTLY_LABEL: row("heatmap_s", 2.4)}
    goals = floor.goals(first_view_medians, "featviz run")
    assert goals["first_picture_limit_s"] == pytest.approx(1.4) and goals["first_picture_pass"] is False
    assert goals["interactive_map_ratio"] == pytest.approx(2.5 / 2.4) and goals["interactive_map_pass"] is True
