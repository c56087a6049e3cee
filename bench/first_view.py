"""The first view and model switches, in Chromium, against a freshly started server every time.

*First view*: the server process is started (``featviz run``, or Streamlit's own ``streamlit run app.py``
as on Community Cloud); ``/_stcore/health`` is polled every 10 ms; the moment it first answers is
"ready". A Chromium page (launched and opened before the server starts) then goes to the app, and a
``MutationObserver`` installed before the page's first script records, on the page's own clock, when the
first element of the app appeared, when the line "Loading the model…" appeared, when the still picture of
the mosaic that the page shows while Plotly starts (``ui/still.py``) was on screen, and when the
interactive mosaic's heatmap bitmap (``.st-key-grid_chart g.hm image`` with an ``href``) was drawn. "First
map" is the earlier of the last two: when the visitor first sees the feature maps. The reported times are
seconds from "ready". The server's RSS (and its anonymous part) is read once the run is over.

*Model switch*: a fresh server on ``?model=tv:resnet18:random``; then the sidebar's architecture is changed
to each model of ``SWITCH_MODELS`` in turn (random weights, never loaded before in that server), timed from
the click on the option (page clock) to the spinner naming the model and to "settled": the new heatmap
drawn, Streamlit's running indicator gone and the header naming the model. The model's own build time
(``load_torchvision(name, weights=None)``), its dry run (``list_layers``), the extraction of its default
layer and the mosaic figure are timed in a fresh child process per model and round, so "the rest" (the
app, the network and the browser) is the settled time minus those.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.appserver import STILL_PAINTED_JS

from .common import summary

__all__ = ["SWITCH_MODELS", "TARGET_S", "breakdown", "first_view_once", "run", "switch_once", "variants"]

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0
"""``featviz run``: seconds from "ready" to the first map on screen (2 cores)."""
SWITCH_MODELS = ("resnet50", "convnext_base", "efficientnet_b7")
VIEWPORT = {"width": 1400, "height": 1000}

HEATMAP_JS = """() => { const img = document.querySelector('.st-key-grid_chart g.hm image');
  return img && (img.getAttribute('href') || img.getAttribute('xlink:href') || '').length > 0; }"""
FIRST_VIEW_MARKS = {
    "first_element": "() => document.querySelector('[data-testid=stElementContainer]')",
    "loading": "() => (document.querySelector('[data-testid=stMain]') || {}).textContent?.includes('Loading the model')",
    "still": STILL_PAINTED_JS,
    "heatmap": HEATMAP_JS,
}
SPINNER_JS = """(name) => (document.querySelector('[data-testid=stSidebar]') || {}).textContent?.includes('Building ' + name)"""
NEW_HEATMAP_JS = """(old) => { const img = document.querySelector('.st-key-grid_chart g.hm image');
  const href = img ? (img.getAttribute('href') || img.getAttribute('xlink:href') || '') : '';
  return href.length > 0 && href !== old; }"""
_JS_IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')"""
_JS_HREF = """() => { const img = document.querySelector('.st-key-grid_chart g.hm image');
  return img ? (img.getAttribute('href') || img.getAttribute('xlink:href') || '') : ''; }"""


def variants(root: Path = ROOT) -> dict[str, dict[str, Any]]:
    """The ways of starting the app that are compared: label -> command, folder, extra environment."""
    py = sys.executable
    return {
        "featviz run": {"command": (py, "-m", "featviz", "run"), "cwd": root, "env": {}},
        "streamlit run app.py": {"command": (py, "-m", "streamlit", "run", "app.py"), "cwd": root, "env": {}},
    }


def first_view_once(browser: Any, command: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None,
                    timeout_s: float = 180.0, until: str = "heatmap") -> dict[str, Any]:
    """One fresh server, one visit: seconds from "ready" to what the visitor sees, and the server's RSS. The
    visit ends once the mark ``until`` was seen (a bare image page has no heatmap) and the app is idle."""
    from tests.appserver import marks_script, page_marks, start_app

    from .memory import rss_anon_bytes, rss_bytes

    context = browser.new_context(viewport=VIEWPORT)
    try:
        context.add_init_script(marks_script(FIRST_VIEW_MARKS))
        page = context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        with start_app(command=tuple(command), cwd=cwd, env=dict(env or {}), poll=0.01, timeout=timeout_s) as app:
            from .common import clock

            navigated = clock()
            page.goto(app.url, wait_until="commit")
            page.wait_for_function("(name) => name in window.__fv.marks", arg=until, polling=10)
            page.wait_for_function(_JS_IDLE, polling=10)
            marks = page_marks(page)
            offset = navigated - app.ready_at  # page clock 0 = navigation start (within a few ms)
            pid = app.process.pid
            rss, anon, cuda = rss_bytes(pid), rss_anon_bytes(pid), rss_of_libraries(pid)
            warm = re.search(r"featviz warm-up done in ([\d.]+) s \((.*)\)", app.log_text())

        def since_ready(name: str) -> float | None:
            return round(offset + marks[name] / 1000, 4) if name in marks else None

        shown = [t for t in (since_ready("still"), since_ready("heatmap")) if t is not None]

        return {
            "server_start_to_ready_s": round(app.ready_at - app.started_at, 4),
            "first_element_s": since_ready("first_element"),
            "loading_line_s": since_ready("loading"),
            "still_s": since_ready("still"),
            "heatmap_s": since_ready("heatmap"),
            "first_map_s": min(shown) if shown else None,
            "rss_mb": round(rss / 2**20, 1),
            "rss_anon_mb": round(anon / 2**20, 1) if anon is not None else None,
            "rss_cuda_libraries_mb": cuda,
            "warm_up": warm.group(2) if warm else None,
        }
    finally:
        context.close()


CUDA_LIBRARIES = re.compile(r"/(nvidia/|cuda/bindings/|triton/|libtorch_cuda|libc10_cuda|libcaffe2_nvrtc|libtorch_nvshmem)")
"""Mappings of the CUDA build's libraries and of what only it depends on (cuda-bindings, triton): absent with
PyTorch's CPU wheels."""


def rss_of_libraries(pid: int, pattern: re.Pattern[str] = CUDA_LIBRARIES) -> float | None:
    """MB of ``pid``'s resident memory in file mappings whose path matches ``pattern`` (``/proc/<pid>/smaps``):
    what the CUDA libraries hold in memory; the CPU wheel does not load them."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    total_kb, current = 0, False
    for line in text.splitlines():
        head = line.split(None, 1)[0] if line else ""
        if "-" in head and not head.endswith(":"):  # a mapping's header line: "start-end perms offset dev inode path"
            parts = line.split()
            current = len(parts) >= 6 and bool(pattern.search(parts[5]))
        elif current and head == "Rss:":
            total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def _option_pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"· {re.escape(name)}( ·|$)")


def switch_once(browser: Any, command: Sequence[str], cwd: Path, models: Sequence[str] = SWITCH_MODELS,
                timeout_s: float = 240.0) -> dict[str, dict[str, float | None]]:
    """One fresh server on resnet18 (random weights), then a switch to each of ``models``."""
    from tests.appserver import clear_marks, marks_script, page_marks, start_app, watch

    out: dict[str, dict[str, float | None]] = {}
    context = browser.new_context(viewport=VIEWPORT)
    try:
        context.add_init_script(marks_script(FIRST_VIEW_MARKS))
        page = context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        with start_app(command=tuple(command), cwd=cwd, poll=0.05, timeout=timeout_s) as app:
            page.goto(app.url + "?model=tv:resnet18:random")
            page.wait_for_function("() => 'heatmap' in window.__fv.marks", polling=10)
            page.wait_for_function(_JS_IDLE, polling=10)
            for name in models:
                old = page.evaluate(_JS_HREF)
                box = page.locator(".st-key-arch input[role='combobox']")
                box.click()
                box.press("Control+a")
                box.press_sequentially(name)
                option = page.get_by_role("option", name=_option_pattern(name))
                option.wait_for(state="visible")
                clear_marks(page)
                watch(page, "switch_spinner", SPINNER_JS, name)
                watch(page, "switch_heatmap", NEW_HEATMAP_JS, old)
                option.click()
                settled = page.wait_for_function(
                    """(name) => { const fv = window.__fv; if (!('switch_heatmap' in fv.marks)) return false;
                    if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
                    const cap = document.querySelector('[data-testid=stMain] [data-testid=stCaptionContainer]');
                    return cap && cap.textContent.includes(' · ' + name + ' · ') && performance.now(); }""",
                    arg=name, polling=10,
                ).json_value()
                marks = page_marks(page)
                click = marks.get("click")
                spinner = marks.get("switch_spinner")
                out[name] = {
                    "spinner_s": round((spinner - click) / 1000, 4) if spinner is not None and click else None,
                    "settled_s": round((float(settled) - click) / 1000, 4) if click else None,
                }
    finally:
        context.close()
    return out


def _child_breakdown(name: str) -> dict[str, float]:
    """In a fresh process: the imports (untimed), then each step of showing ``name`` for the first time."""
    from ui.runtime import tune_process

    tune_process()
    from featviz_core import default_layer, extract, figures, list_layers, load_torchvision, stats
    from featviz_core.images import default_sample, load_image, sample_bytes

    from .common import clock

    image = load_image(sample_bytes(default_sample(for_demo=False)))
    t0 = clock()
    model = load_torchvision(name, weights=None)
    t1 = clock()
    list_layers(model)
    t2 = clock()
    layer = default_layer(model)
    maps = extract(model, image, [layer]).activations[layer]
    t3 = clock()
    order = stats.order_channels(stats.channel_stats(maps), "index")
    figures.mosaic_figure(maps, [int(c) for c in order[:64]], scale="shared",
                          colorscale=next(iter(figures.COLORSCALES)), zrange=figures.layer_range(maps)).to_json()
    t4 = clock()
    return {"build_s": t1 - t0, "dry_run_s": t2 - t1, "extract_s": t3 - t2, "figure_s": t4 - t3}


def breakdown(name: str, cwd: Path = ROOT) -> dict[str, float]:
    """:func:`_child_breakdown` in a fresh child process."""
    code = f"import json, bench.first_view as f; print(json.dumps(f._child_breakdown({name!r})))"
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _stats(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return summary([s[key] for s in samples if s.get(key) is not None])


def run(runs: int = 5, switch_runs: int | None = None, models: Sequence[str] = SWITCH_MODELS,
        chosen: Mapping[str, Mapping[str, Any]] | None = None, with_floor: bool = True) -> dict[str, Any]:
    """``runs`` first views per variant (alternating), ``switch_runs`` servers switching through ``models``,
    and the same number of child processes timing each model's own steps. With ``with_floor``, the two bare
    pages of :mod:`bench.floor` are visited in the same rotation and the first variant is held to the floor's
    goals. ``{"skipped": ...}`` without Chromium."""
    from .browser import chromium_available

    if not chromium_available():
        return {"skipped": "Chromium not found (/usr/bin/chromium or $FEATVIZ_CHROMIUM)"}
    chosen = chosen if chosen is not None else variants()
    if not with_floor:
        return _run(runs, switch_runs, models, chosen)
    from . import floor

    with tempfile.TemporaryDirectory(prefix="featviz-floor-") as folder:
        shown = floor.prepare(Path(folder))
        result = _run(runs, switch_runs, models, {**chosen, **floor.variants(Path(folder))})
    result["floor"] = {**floor.goals(result["first_view"], next(iter(chosen))), "shown": shown,
                       "picture_margin_s": floor.PICTURE_MARGIN_S, "map_ratio": floor.MAP_RATIO}
    return result


def _run(runs: int, switch_runs: int | None, models: Sequence[str],
         chosen: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.appserver import launch_browser

    switch_runs = runs if switch_runs is None else switch_runs
    samples: dict[str, list[dict[str, Any]]] = {label: [] for label in chosen}
    switches: dict[str, list[dict[str, float | None]]] = {m: [] for m in models}
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            for _ in range(runs):
                for label, how in chosen.items():
                    samples[label].append(first_view_once(browser, how["command"], Path(how["cwd"]), how.get("env"),
                                                          until=how.get("until", "heatmap")))
            first = next(iter(chosen.values()))
            for _ in range(switch_runs if models else 0):
                for model, timing in switch_once(browser, first["command"], Path(first["cwd"]), models).items():
                    switches[model].append(timing)
        finally:
            browser.close()
    steps: dict[str, list[dict[str, float]]] = {m: [breakdown(m) for _ in range(switch_runs)] for m in models}
    first_view: dict[str, Any] = {}
    for label, rows in samples.items():
        keys = ("server_start_to_ready_s", "first_element_s", "loading_line_s", "still_s", "heatmap_s", "first_map_s",
                "rss_mb", "rss_anon_mb", "rss_cuda_libraries_mb")
        first_view[label] = {
            "command": " ".join(str(c) for c in chosen[label]["command"][1:]),
            "env": dict(chosen[label].get("env") or {}),
            **{key: _stats(rows, key) for key in keys},
            "samples": rows,
        }
    switch: dict[str, Any] = {}
    for model in models:
        settled = _stats(switches[model], "settled_s")
        own = {k: summary([s[k] for s in steps[model]]) for k in ("build_s", "dry_run_s", "extract_s", "figure_s")}
        core = sum(v["median"] or 0.0 for v in own.values())
        switch[model] = {
            "spinner": _stats(switches[model], "spinner_s"),
            "settled": settled,
            "steps": own,
            "rest_s": None if settled["median"] is None else settled["median"] - core,
            "samples": switches[model],
        }
    label = next(iter(chosen))
    median = first_view[label]["first_map_s"]["median"]
    return {
        "runs": runs,
        "switch_runs": switch_runs,
        "target_s": TARGET_S,
        "target_variant": label,
        "pass": median is not None and median <= TARGET_S,
        "first_view": first_view,
        "switch": switch,
    }
