"""Entry point: ``python -m bench.run [--quick] [--only extraction,...,exemplars]`` (SECTIONS lists them).

Runs the chosen measurements (all by default), writes ``bench/results/latest.json`` and
``bench/results/latest.md`` and prints the Markdown. ``--quick`` uses few rounds (a smoke run, not for
conclusions). See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import browser, cams, contention, device, exemplars, extraction, first_view, memory, rendering, sources
from . import onnx as onnx_bench
from . import transformers as transformer_bench
from . import visualize as visualization
from . import volumes as volume_bench
from .common import machine

RESULTS = Path(__file__).resolve().parent / "results"
SECTIONS = ("extraction", "sources", "onnx", "rendering", "browser", "memory", "contention", "device", "cams",
            "visualize", "exemplars", "first_view", "transformers", "volumes")
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


def _first_view_variants(baseline: str | None) -> dict[str, dict[str, Any]]:
    chosen = first_view.variants()
    label = "featviz run, CUDA_VISIBLE_DEVICES=''"
    chosen[label] = {**chosen["featviz run"], "env": {"CUDA_VISIBLE_DEVICES": ""}}
    if baseline:
        chosen[f"streamlit run app.py in {baseline}"] = {
            "command": (sys.executable, "-m", "streamlit", "run", "app.py"), "cwd": Path(baseline), "env": {},
        }
    return chosen


def _runners(quick: bool, baseline: str | None = None) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "extraction": lambda: extraction.run(rounds=3 if quick else 30, warmup=1 if quick else 3),
        "rendering": lambda: rendering.run(rounds=2 if quick else 9),
        "browser": lambda: browser.run(
            repeats=2 if quick else 8,
            variants={"as shipped": {}, "OMP_WAIT_POLICY=PASSIVE (experiment)": PASSIVE},
            blocks=1 if quick else 2,
        ),
        "memory": lambda: memory.run(uploads=10 if quick else 200, every=5),
        "contention": lambda: contention.run(rounds=1 if quick else 4, children=1 if quick else 2),
        "sources": lambda: sources.run(rounds=3 if quick else 30, warmup=1 if quick else 2),
        "device": lambda: device.run(rounds=3 if quick else 30, warmup=1 if quick else 5),
        "onnx": lambda: onnx_bench.run(rounds=3 if quick else 60, warmup=1 if quick else 3),
        "cams": lambda: cams.run(rounds=2 if quick else 7, passes=16 if quick else 64),
        "visualize": lambda: visualization.run(rounds=1 if quick else 5, steps=8 if quick else 32,
                                               full_steps=32 if quick else 256),
        "exemplars": lambda: exemplars.run(images=48 if quick else 128, rounds=1 if quick else 7,
                                           warmup=0 if quick else 1),
        "first_view": lambda: first_view.run(
            runs=1 if quick else 5, models=first_view.SWITCH_MODELS[:1] if quick else first_view.SWITCH_MODELS,
            chosen=_first_view_variants(baseline),
        ),
        "transformers": lambda: transformer_bench.run(rounds=2 if quick else 15, warmup=1 if quick else 2),
        "volumes": lambda: volume_bench.run(rounds=2 if quick else 15, warmup=1 if quick else 2,
                                            moves=3 if quick else 9),
    }


# ---------------------------------------------------------------------------------------------------
# Markdown


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1e3:.1f}"


def _s(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:.2f}"


def _x(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}×"


def _ok(flag: bool | None) -> str:
    return "–" if flag is None else ("pass" if flag else "**FAIL**")


def _kb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1000:.0f}"


def _machine_md(m: dict[str, Any]) -> list[str]:
    return [
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), load average "
        f"{m['load_average']} at the start, {m.get('load_average_end')} at the end (1, 5, 15 min; above "
        f"{m['cores']} the CPU was shared with other work and timings are noisy); Python {m['python']}; torch {m['torch']} ({m['torch_threads']} intra-op threads, "
        f"{m['torch_interop_threads']} inter-op), torchvision {m['torchvision']}, plotly {m['plotly']}, "
        f"streamlit {m['streamlit']}, numpy {m['numpy']}.",
        "",
    ]


def _extraction_md(r: dict[str, Any]) -> list[str]:
    lines = [
        "### 1 · Extraction overhead (random seeded weights, 224 px, medians of interleaved rounds)",
        "",
        f"Target: {r['target']}. bare = `model.preprocess(image)` + forward under `inference_mode`.",
        "",
        "| model | layers | forward only ms | preprocess ms | bare ms | extract ms | extract / bare "
        "| extract − bare ms | fx ms | fx / bare | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in r["models"]:
        for label, s in m["sets"].items():
            delta = s["extract_minus_bare_ms"]
            lines.append(
                f"| {m['model']} | {label} ({s['layers']}) | {_ms(m['forward_s'])} | {_ms(m['preprocess_s'])} "
                f"| {_ms(m['preprocess_forward_s'])} | {_ms(s['extract_s'])} | {_x(s['extract_over_bare'], 3)} "
                f"| {'–' if delta is None else f'{delta:+.1f}'} | {_ms(s['fx_s'])} | {_x(s['fx_over_bare'], 3)} "
                f"| {_ok(s['pass'])} |"
            )
    rounds = r["models"][0]["rounds"] if r["models"] else 0
    lines += ["", f"{rounds} rounds per variant; torch threads {r['torch_threads']}.", ""]
    for m in r["models"]:
        for label, s in m["sets"].items():
            if s.get("keep_refs_s") is not None:
                lines.append(
                    f"- {m['model']}, {label}: bare {_ms(m['preprocess_forward_s'])} ms → hooks keeping every "
                    f"output {_ms(s['keep_refs_s'])} ms → + copies of the outputs that in-place ReLUs "
                    f"overwrite {_ms(s['keep_refs_and_clone_s'])} ms → extract {_ms(s['extract_s'])} ms "
                    f"({_x(s['extract_over_keep_and_clone'], 3)} the hooks alone)."
                )
    lines.append("")
    return lines


def _rendering_md(r: dict[str, Any]) -> list[str]:
    lines = [
        f"### 2 · Rendering a page of ≤ {r['page']} channels (medians)",
        "",
        "Build = figure construction incl. the layer's colour range; JSON = `plotly.io.to_json` (what "
        "Streamlit sends). Payload in kB (1000 bytes): raw = with Plotly's `\\u002f` escapes undone, "
        "escaped = as sent. Floor = base64 of 4 bytes per shown value + base64 of one index per channel.",
        "",
        "| maps | mosaic build ms | subplots build ms | mosaic / subplots (≤ 0.10) | matplotlib PNG ms (kB) "
        "| mosaic JSON ms | subplots JSON ms | mosaic kB raw / escaped | subplots kB raw / escaped | floor kB "
        "| mosaic raw / floor | escaped / floor | payload ≤ 1.1× floor (raw / escaped) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in r["shapes"]:
        v, t = s["variants"], s["targets"]
        mos, sub, mpl = v["mosaic"], v["subplots"], v.get("matplotlib_png")
        shape = "×".join(str(x) for x in s["shape"])
        shape += f" (page of {s['shown_channels']})" if s["shown_channels"] < s["shape"][0] else ""
        mpl_cell = f"{_ms(mpl['build_s'])} ({_kb(mpl['png_bytes'])})" if mpl else "–"
        lines.append(
            f"| {shape} | {_ms(mos['build_s'])} | {_ms(sub['build_s'])} | {_x(t['build_over_subplots'], 3)} "
            f"{_ok(t['build_pass'])} | {mpl_cell} | {_ms(mos['to_json_s'])} | {_ms(sub['to_json_s'])} "
            f"| {_kb(mos['payload_raw_bytes'])} / {_kb(mos['payload_escaped_bytes'])} "
            f"| {_kb(sub['payload_raw_bytes'])} / {_kb(sub['payload_escaped_bytes'])} "
            f"| {_kb(s['floor_bytes']['floor'])} | {_x(t['payload_raw_over_floor'])} "
            f"| {_x(t['payload_escaped_over_floor'])} | {_ok(t['payload_raw_pass'])} / "
            f"{_ok(t['payload_escaped_pass'])} |"
        )
    b = r.get("mosaic_breakdown_first_shape") or {}
    if b:
        shape = "×".join(str(x) for x in r["shapes"][0]["shape"])
        parts = ", ".join(f"{k} {_kb(n)} kB" for k, n in b.items())
        lines += ["", f"Mosaic JSON of {shape}, unescaped: {parts}."]
    lines.append("")
    return lines


def _browser_md(r: dict[str, Any]) -> list[str]:
    lines = ["### 3 · In Chromium against the running app (resnet18, medians)", ""]
    if "skipped" in r:
        return lines + [f"Skipped: {r['skipped']}.", ""]
    lines += [
        "visible = the mosaic's heatmap bitmap changed; idle = Streamlit's running indicator gone. "
        f"{r['repeats']} repetitions per interaction and variant, in {r['blocks']} alternating blocks "
        "(fresh server each).",
        "",
        "| server | interaction | visible s (p25–p75) | idle s | target | pass |",
        "|---|---|---:|---:|---:|---|",
    ]
    names = {"upload_first_map": "upload → first map", "layer_change": "layer change (new forward pass)",
             "colormap_change": "colormap change (cache hit)"}
    for variant, data in r["variants"].items():
        for key, label in names.items():
            d = data[key]
            vis = d["visible"]
            lines.append(
                f"| {variant} | {label} | {_s(vis['median'])} ({_s(vis['p25'])}–{_s(vis['p75'])}) "
                f"| {_s(d['idle']['median'])} | ≤ {d['target_s']:.0f} s | {_ok(d['pass'])} |"
            )
    lines.append("")
    return lines


def _memory_md(r: dict[str, Any]) -> list[str]:
    lines = ["### 4 · Server memory over distinct uploads (resnet18)", ""]
    if "skipped" in r:
        return lines + [f"Skipped: {r['skipped']}.", ""]
    last = r["curve"][-1]["uploads"]
    shown = [p for p in r["curve"] if p["uploads"] <= 50 or p["uploads"] % 25 == 0 or p["uploads"] == last]
    head = "| uploads | " + " | ".join(str(p["uploads"]) for p in shown) + " |"
    sep = "|---|" + "---:|" * len(shown)
    rss = "| RSS MB | " + " | ".join(f"{p['rss_mb']:.0f}" for p in shown) + " |"
    anon = "| of which anonymous MB | " + " | ".join(
        "–" if p.get("anon_mb") is None else f"{p['anon_mb']:.0f}" for p in shown
    ) + " |"
    a = r["analysis"]
    bounds = ", ".join(f"{k}={v}" for k, v in r["cache_bounds"].items())
    verdict = {True: "plateaus", False: "**does not plateau**", None: "no verdict"}[a["plateau"]]
    lines += [head, sep, rss, anon, ""]
    detail = (
        f"slope {a['slope_mb_per_upload']} MB/upload over the {a['uploads_fitted']} uploads after the caches "
        f"are full (limit {a['slope_limit_mb_per_upload']}), range {a['range_after_full_mb'][0]}–"
        f"{a['range_after_full_mb'][1]} MB there"
        if a["plateau"] is not None
        else a["note"]
    )
    lines.append(
        f"Cache bounds: {bounds}. RSS {verdict}: +{a['growth_until_full_mb']} MB until the caches are full "
        f"(upload {a['caches_full_after_upload']}), then {detail}; peak {r['peak_mb']} MB. "
        f"Source: {r['rss_source']}."
    )
    an = r.get("analysis_anon")
    if an and an["plateau"] is not None:
        lines.append(f"Anonymous memory: slope {an['slope_mb_per_upload']} MB/upload after the caches are full.")
    lines.append("")
    return lines


def _contention_md(r: dict[str, Any]) -> list[str]:
    lines = [
        "### 5 · Extraction with one core busy (resnet18, default layer; medians)",
        "",
        f"torch threads {r['torch_threads']}; {r['samples_per_cell']} samples per cell, fresh process per "
        "policy, alternating.",
        "",
        "| OMP_WAIT_POLICY | idle ms | one core busy ms | busy / idle |",
        "|---|---:|---:|---:|",
    ]
    for policy, d in r["policies"].items():
        lines.append(f"| {policy} | {_ms(d['idle_s'])} | {_ms(d['busy_s'])} | {_x(d['busy_over_idle'])} |")
    lines.append("")
    return lines


def _sources_md(r: dict[str, Any]) -> list[str]:
    lines = [
        "### 1b · Extraction on every model source (random seeded weights, default layer; medians)",
        "",
        f"Target: {r['target']}; {r['rounds']} interleaved rounds.",
        "",
        "| source | model | layer | bare ms | extract ms | extract / bare | target |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in r["sources"]:
        lines.append(
            f"| {row['source']} | {row['model']} | {row['layer']} | {_ms(row['bare_s'])} | {_ms(row['extract_s'])} "
            f"| {_x(row['extract_over_bare'], 3)} | {_ok(row['pass'])} |"
        )
    lines.append("")
    return lines


def _device_md(r: dict[str, Any]) -> list[str]:
    lines = ["### 6 · Extraction on a CUDA GPU (random weights, 224 px, default layer; medians)", ""]
    if "skipped" in r:
        return lines + [f"Skipped: {r['skipped']} — GPU figures are not measured on this machine.", ""]
    lines += [
        f"{r['device']}. Target: {r['target']}; both sides synchronize before the clock stops.",
        "",
        "| model | layer | forward ms | preprocess + forward ms | extract ms | extract / bare | target |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for m in r["models"]:
        lines.append(
            f"| {m['model']} | {m['layer']} | {_ms(m['forward_s'])} | {_ms(m['preprocess_forward_s'])} "
            f"| {_ms(m['extract_s'])} | {_x(m['extract_over_bare'], 3)} | {_ok(m['pass'])} |"
        )
    lines.append("")
    return lines


def _first_view_md(r: dict[str, Any]) -> list[str]:
    lines = ["### 10 · First view and model switches in Chromium (fresh server every run, medians)", ""]
    if "skipped" in r:
        return lines + [f"Skipped: {r['skipped']}.", ""]
    lines += [
        f"{r['runs']} runs per server, alternating. ready = `/_stcore/health` first answers (polled every 10 ms); "
        "then one visit, timed on the page's clock by a MutationObserver. first map = the earlier of the still "
        "picture of the maps (shown while Plotly starts) and the interactive heatmap. Target: the first map "
        f"≤ {r['target_s']:.0f} s after ready with `{r['target_variant']}`.",
        "",
        "| server | start → ready s | ready → first element s | ready → “Loading the model…” s "
        "| ready → first map s (p25–p75) | ready → interactive heatmap s (p25–p75) | RSS MB after the view "
        "| of which anonymous / CUDA libraries MB | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for label, d in r["first_view"].items():
        heat, first = d["heatmap_s"], d.get("first_map_s") or d["heatmap_s"]
        target = _ok(r["pass"]) if label == r["target_variant"] else "–"
        lines.append(
            f"| {label} | {_s(d['server_start_to_ready_s']['median'])} | {_s(d['first_element_s']['median'])} "
            f"| {_s(d['loading_line_s']['median'])} | {_s(first['median'])} ({_s(first['p25'])}–{_s(first['p75'])}) "
            f"| {_s(heat['median'])} ({_s(heat['p25'])}–{_s(heat['p75'])}) "
            f"| {_mb(d['rss_mb']['median'])} | {_mb(d['rss_anon_mb']['median'])} / "
            f"{_mb(d['rss_cuda_libraries_mb']['median'])} | {target} |"
        )
    if "floor" in r:
        f = r["floor"]
        lines += [
            "",
            f"Against the floor (bench/floor.py: bare Streamlit pages showing the same first picture, "
            f"{f['shown']['heatmap_shape'][0]}×{f['shown']['heatmap_shape'][1]} cells, started and visited alike): "
            f"`{f['variant']}`'s first picture ≤ the bare image page + {f['picture_margin_s']} s, its interactive "
            f"map ≤ {f['map_ratio']}× the bare Plotly page.",
            "",
            "| | featviz s | floor s | limit s | ratio | goal |",
            "|---|---:|---:|---:|---:|---|",
            f"| first picture vs one `st.image` | {_s(f['first_picture_s'])} | {_s(f['bare_image_s'])} "
            f"| {_s(f['first_picture_limit_s'])} | {_x(_ratio(f['first_picture_s'], f['bare_image_s']))} "
            f"| {_ok(f['first_picture_pass'])} |",
            f"| interactive map vs one `st.plotly_chart` | {_s(f['interactive_map_s'])} | {_s(f['bare_plotly_s'])} "
            f"| {_s(f['interactive_map_limit_s'])} | {_x(f['interactive_map_ratio'])} | {_ok(f['interactive_map_pass'])} |",
        ]
    if r["switch"]:
        lines += [
            "",
            f"Model switches (random weights, {r['switch_runs']} fresh servers on resnet18 switching through "
            "them in turn): from the click on the architecture to the spinner naming the model and to the settled "
            "view; the model's own steps timed in a fresh process per model and run; rest = settled − those.",
            "",
            "| model | click → spinner s | click → settled s | build s | dry run s | extraction s | figure s "
            "| rest s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for model, d in r["switch"].items():
            st = d["steps"]
            lines.append(
                f"| {model} | {_s(d['spinner']['median'])} | {_s(d['settled']['median'])} "
                f"| {_s(st['build_s']['median'])} | {_s(st['dry_run_s']['median'])} | {_s(st['extract_s']['median'])} "
                f"| {_s(st['figure_s']['median'])} | {_s(d['rest_s'])} |"
            )
    lines.append("")
    return lines


def _onnx_md(r: dict[str, Any]) -> list[str]:
    m = r["medians_s"]
    return [
        f"### 1c · ONNX files: extracting one layer ({r['model']}, 224 px, layer {r['layer']}; medians)",
        "",
        f"{r['rounds']} interleaved rounds; torch threads {r['torch_threads']}. bare = `model.preprocess(image)` + "
        "the run itself.",
        "",
        "| path | bare ms | extract ms | extract / bare | fastest rounds: extract / bare | target |",
        "|---|---:|---:|---:|---:|---|",
        f"| onnxruntime (fallback; bare = plain `InferenceSession.run`) | {_ms(m['ort bare'])} "
        f"| {_ms(m['extract[onnxruntime]'])} | {_x(r['extract_ort_over_ort_bare'], 3)} "
        f"| {_x(r['extract_ort_over_ort_bare_min'], 3)} | {_ok(r['pass_ort'])} |",
        f"| converted to PyTorch (bare = forward of the converted module) | {_ms(m['torch bare'])} "
        f"| {_ms(m['extract[converted]'])} | {_x(r['extract_converted_over_torch_bare'], 3)} "
        f"| {_x(r['extract_converted_over_torch_bare_min'], 3)} | {_ok(r['pass_converted'])} |",
        "",
        f"The converted module's forward takes {_x(r['torch_bare_over_ort_bare'])} onnxruntime's time.",
        "",
    ]


def _visualize_md(r: dict[str, Any]) -> list[str]:
    full = r["full_run"]
    lines = [
        f"### 8 · Feature visualization ({r['model']}, {r['size']} px, medians)",
        "",
        f"Full run: `visualize(model, \"{full['layer']}\", 0)` with {full['steps']} steps took "
        f"**{_s(full['seconds'])} s** wall-clock (best of {len(full['all_runs_s'])}: "
        f"{', '.join(_s(t) for t in full['all_runs_s'])} s; {_s(full['cpu_seconds'])} CPU-seconds; target ≤ "
        f"{full['target_s']:.0f} s: {_ok(full['pass'])}). The model sees {r['transformed_size']} px: the moved "
        f"frame sampled at the picture's size. Sampled at lucid's own {r['lucid_size']} px, the same run took "
        f"{_s(full['lucid_view_s'])} s ({_x(full['lucid_view_ratio'])} as long).",
        "",
        "CPU = CPU-seconds of the process per step (all threads): it barely changes when other work shares the "
        "cores, so the two ratios are computed from it; wall-clock ratios in brackets.",
        "",
        "| target layer | ms / step wall (p25–p75) | steps / s | 256 steps s | CPU ms / step | no early stop CPU ms "
        "| early stop speed-up | without robustness CPU ms | robustness share of a step (≤ 15 %) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for d in r["by_depth"]:
        share = "–" if d["robustness_overhead"] is None else f"{d['robustness_overhead'] * 100:.1f} %"
        wall = "–" if d["robustness_overhead_wall"] is None else f"{d['robustness_overhead_wall'] * 100:.1f} %"
        lines.append(
            f"| {d['layer']} | {_ms(d['step_s'])} ({_ms(d['step_p25_s'])}–{_ms(d['step_p75_s'])}) "
            f"| {d['steps_per_s']:.1f} | {_s(d['projected_256_s'])} | {_ms(d['cpu_step_s'])} "
            f"| {_ms(d['cpu_no_early_stop_step_s'])} | {_x(d['early_stop_speedup'])} ({_x(d['early_stop_speedup_wall'])}) "
            f"| {_ms(d['cpu_no_robustness_step_s'])} | {share} ({wall}) {_ok(d['robustness_pass'])} |"
        )
    lines += ["", f"{r['rounds']} interleaved rounds of {r['steps_per_variant']} steps per variant; torch threads "
              f"{r['torch_threads']}, OMP_WAIT_POLICY {r['omp_wait_policy']}.", ""]
    quality = r.get("view_quality") or []
    if quality:
        lines += [f"View quality (demo model, {full['steps']} steps): the value the final picture reaches when the "
                  f"model sees the centre {r['transformed_size']} px of the moved frame, against lucid's whole "
                  f"{r['lucid_size']} px frame.", "",
                  "| layer | channel | objective | centre view | lucid's view | ratio |", "|---|---:|---|---:|---:|---:|"]
        lines += [f"| {q['layer']} | {q['channel']} | {q['objective']} | {q['centre_view']:.4g} | {q['lucid_view']:.4g} "
                  f"| {_x(q['ratio'])} |" for q in quality]
        lines.append("")
    return lines


def _exemplars_md(r: dict[str, Any]) -> list[str]:
    bare = r["bare"]
    lines = [
        f"### 9 · Exemplars: throughput over {r['images']} JPEGs ({r['model']}, batch {r['batch_size']}, "
        f"{r['workers']} decoding worker(s); medians of {r['rounds']} interleaved rounds)",
        "",
        f"Target: {r['target']}. bare = DataLoader (read, decode, preprocess) + full forward under inference_mode.",
        "",
        "| variant | layer | s | images/s | throughput / bare | fastest rounds: throughput / bare "
        "| receptive field, first time s | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
        f"| bare DataLoader + forward | — | {_s(bare['seconds']['median'])} | {bare['images_per_s']:.1f} | 1.00× "
        "| 1.00× | — | — |",
    ]
    for label, d in r["layers"].items():
        lines.append(
            f"| featviz ({label}) | `{d['layer']}` | {_s(d['seconds']['median'])} | {d['images_per_s']:.1f} "
            f"| {_x(d['throughput_over_bare'])} | {_x(d['throughput_over_bare_fastest'])} "
            f"| {_s(d['receptive_field_first_s'])} | {_ok(d['pass'])} |"
        )
    lines.append("")
    return lines


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"## featviz benchmarks — {report['date']}{' (quick)' if report['quick'] else ''}", ""]
    lines += _machine_md(report["machine"])
    writers = {
        "extraction": _extraction_md, "rendering": _rendering_md, "browser": _browser_md,
        "memory": _memory_md, "contention": _contention_md, "device": _device_md, "sources": _sources_md,
        "onnx": _onnx_md, "first_view": _first_view_md,
        "cams": lambda r: cams.markdown(r, _ms, _x), "visualize": _visualize_md, "exemplars": _exemplars_md,
        "transformers": lambda r: transformer_bench.markdown(r, _ms, _x),
        "volumes": lambda r: volume_bench.markdown(r, _ms, _x),
    }
    for name in SECTIONS:
        if name in report["results"]:
            result = report["results"][name]
            if "error" in result:
                lines += [f"### {name}", "", f"Failed: `{result['error']}`", ""]
            else:
                lines += writers[name](result)
    lines.append(f"Total time {report['seconds']:.0f} s. Command: `{report['command']}`.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run, not for conclusions")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", default=str(RESULTS), help="folder for latest.json and latest.md")
    parser.add_argument("--first-view-baseline", metavar="DIR", default=None,
                        help="also time `streamlit run app.py` in another checkout (e.g. an older commit)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    runners = _runners(args.quick, args.first_view_baseline)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "command": "python -m bench.run" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "machine": machine(),
        "results": {},
    }
    for name in chosen:
        t0 = time.perf_counter()
        print(f"[bench] {name}...", file=sys.stderr, flush=True)
        try:
            report["results"][name] = runners[name]()
        except Exception as exc:  # one failing section must not lose the others
            report["results"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    report["seconds"] = time.perf_counter() - started
    report["machine"]["load_average_end"] = machine()["load_average"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(report)
    (out / "latest.json").write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
    (out / "latest.md").write_text(text, encoding="utf-8")
    print(text)
    failed = [n for n, r in report["results"].items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
