"""Prepare the first view before the server listens (``featviz run``; ``make run`` calls it).

The first visitor of a fresh ``streamlit run app.py`` waits for torch and torchvision to import, the model
to load, its dry run (:func:`featviz_core.list_layers`), the first extraction and the first Plotly figure
(Plotly builds its validators on first use). :func:`warm_up` does all of that in the server process before
Streamlit starts listening: the model goes into the app's own ``st.cache_resource`` (shared with every
session), the dry run into ``featviz_core``'s per-model layer cache, and the rest leaves Python's and
torch's one-time costs paid. It never runs the cached extraction (``ui.cache.extraction``), so the server
log's ``featviz forward pass`` lines count visitors' passes only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("featviz")

__all__ = ["first_model", "warm_up"]


def first_model() -> tuple[Any, bool]:
    """The model a new visitor sees first, loaded through the app's cache; (model, is the demo model).

    The same choice as ``ui.model_picker.first_view_defaults``: the command line's model, else resnet18
    when its ImageNet weights are on this machine, else the offline demo model.
    """
    from featviz_core.models import ModelSource, ModelSpec

    from . import cache, source_code, source_imagenet

    code = source_code.available()
    if code is not None and code.model:
        model = cache.code_model(code.model, code.weights, code.classes, code.input_size, code.normalization)
        cache.mark_prepared(source_code.SPEC, code)
        return model, False
    arch = source_imagenet.DEFAULT_ARCH
    if source_imagenet.weights_are_cached(arch):
        model = cache.torchvision_model(arch, True)
        cache.mark_prepared(ModelSpec(ModelSource.TORCHVISION, arch))
        return model, False
    return cache.demo_model(), True


def _step(timings: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        return fn()
    finally:
        timings[name] = round(time.perf_counter() - started, 3)


def _imports() -> None:
    # Streamlit warns "No runtime found" for every st.cache_data defined before its server exists.
    from streamlit.runtime.caching import cache_data_api  # its logger's level is set on import

    quiet = logging.getLogger(cache_data_api.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        _import_app()
        _skip_script_check()
    finally:
        quiet.setLevel(level)


def _skip_script_check() -> None:
    """Streamlit checks once per process, on the first element any session sends, whether it runs in a REPL
    (``inspect.stack()``, which maps every frame to its module by scanning ``sys.modules``: 0.2–0.4 s with
    torch imported, paid by the first visitor). A server started by ``featviz run`` never is one."""
    from streamlit import delta_generator

    if hasattr(delta_generator, "_use_warning_has_been_displayed"):
        delta_generator._use_warning_has_been_displayed = True


def _import_app() -> None:
    import pandas  # noqa: F401 - the statistics table
    import plotly.graph_objects  # noqa: F401
    import plotly.io  # noqa: F401 - what st.plotly_chart serializes with
    import plotly.tools  # noqa: F401
    import pyarrow  # noqa: F401 - how st.dataframe sends it
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    import featviz_core  # noqa: F401

    from . import jobs, router, sidebar, state  # noqa: F401 - everything the router and the pages import


def _first_view(model: Any, demo: bool) -> None:
    import plotly.io
    import plotly.tools

    from featviz_core import default_layer, extract, figures, list_layers, stats
    from featviz_core.images import default_sample, load_image, sample_bytes

    list_layers(model)  # the dry run, remembered per model
    layer = default_layer(model)
    if model.is_volumetric:  # a 3-D model (shown on the Volumes page): the phantom, its middle depth
        from featviz_core.images import phantom_volume

        volume_maps = extract(model, phantom_volume(), [layer]).activations[layer]
        maps = volume_maps[:, volume_maps.shape[1] // 2]
    else:
        sample = default_sample(for_demo=demo)
        maps = extract(model, load_image(sample_bytes(sample), f"{sample}.png"), [layer]).activations[layer]
    channel_stats = stats.channel_stats(maps)
    order = stats.order_channels(channel_stats, "index")
    figure = figures.mosaic_figure(maps, [int(c) for c in order[:64]], scale="shared",
                                   colorscale=next(iter(figures.COLORSCALES)), zrange=figures.layer_range(maps))
    figure = plotly.tools.return_figure_from_figure_or_data(figure, validate_figure=True)
    plotly.io.to_json(figure, validate=False)
    figures.histogram_figure(maps[0], title="warm-up").to_json()
    stats.stats_rows(channel_stats)


def warm_up() -> dict[str, float]:
    """Import and run everything the first view needs; returns seconds per step (also logged).

    A step that fails is logged and skipped: the visitor then sees the app's own message for it.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        _step(timings, "imports", _imports)
        model, demo = _step(timings, "model", first_model)
        _step(timings, "first view", lambda: _first_view(model, demo))
    except Exception as exc:  # noqa: BLE001 - the app reports the same problem to its visitor
        from featviz_core import FeatvizError

        if isinstance(exc, FeatvizError):
            log.warning("featviz warm-up stopped early: %s", exc)
        else:
            log.exception("featviz warm-up stopped early; the first visitor will wait instead")
    timings["total"] = round(time.perf_counter() - started, 3)
    log.info("featviz warm-up done in %.2f s (%s)", timings["total"],
             ", ".join(f"{k} {v:.2f} s" for k, v in timings.items() if k != "total"))
    return timings
