"""Volumes: a 3-D model on a scan, a slice move on the Volumes page, and a CT too large to keep (issue #21, point 6).

- **extraction**: MONAI ``DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)`` loaded as ``featviz run
  --model bench.volumes:densenet121_3d`` loads it (``load_from_code``: a 3-D model fed (1, 1, 128, 128, 128)),
  on a 128³ CT-like volume (the bundled phantom resampled to 128³). Interleaved: ``forward`` (a ready tensor,
  ``inference_mode``), ``preprocess+forward`` (``model.preprocess_volume(volume)`` + forward: the baseline) and
  ``extract`` at the model's default layer. Target: extract <= 1.05x the baseline.
- **peak memory** of one extraction and of the bare pass: the process's peak RSS above its RSS before the call
  (``VmHWM`` reset through ``/proc/self/clear_refs``; where that is refused, RSS polled every millisecond) and
  tracemalloc's peak (numpy and Python allocations; torch's tensors are not traced).
- **a slice move** (what ``ui/volume_view.py`` and ``ui/volume_model_view.py`` run when a slider moves, the model's
  results coming from the cache): the three plane figures with the crosshair, ``st.cache_data``'s copy of the
  cached maps and CAM (an unpickle), the layer list, the maps at the slice's depth as a mosaic, the CAM stretched
  over the volume and laid on the three planes; then ``plotly.io.to_json`` of the seven figures (what
  ``st.plotly_chart`` sends). Target: <= 0.3 s on the server, build + JSON.
- **a 512×512×300 CT** (int16 HU as a ``.nii`` file, 157 MB): what ``load_volume`` makes of it (the sentence, the
  shape it keeps), its time and peak memory, then the same extraction and a slice move on it.
"""

from __future__ import annotations

import gc
import pickle
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import plotly.io as pio
import torch

from featviz_core import default_cam_layer, default_layer, extract, figures, list_layers
from featviz_core.cam import cam as compute_cam
from featviz_core.cam import upsample_plane
from featviz_core.images import PLANES, Volume, load_volume, phantom_volume
from featviz_core.models import LoadedModel, Preprocessing
from featviz_core.models.sources import load_from_code
from featviz_core.models.volume_input import resample

from .common import bare_passes, interleaved, ratio, summary

__all__ = ["EXTRACT_TARGET", "SLICE_TARGET_S", "densenet121_3d", "markdown", "peak_memory", "run", "slice_move"]

EXTRACT_TARGET = 1.05
SLICE_TARGET_S = 0.3
SIZE = 128
SPEC = "bench.volumes:densenet121_3d"
CT_SHAPE = (300, 512, 512)  # (slices, rows, columns)
CT_SPACING_MM = (0.7, 0.7, 1.0)  # x, y, z


def densenet121_3d(size: int = SIZE) -> tuple[torch.nn.Module, Preprocessing]:
    """MONAI's 3-D DenseNet121 (1 input channel, 2 classes; seeded random weights) for a ``size``³ input: the factory
    ``featviz run --model bench.volumes:densenet121_3d`` would load."""
    from monai.networks.nets import DenseNet121

    torch.manual_seed(0)
    return DenseNet121(spatial_dims=3, in_channels=1, out_channels=2), Preprocessing(input_size=(size, size, size))


def densenet_3d_tiny() -> tuple[torch.nn.Module, Preprocessing]:
    """A tiny MONAI 3-D DenseNet (8 features, two blocks of two layers) for a 32³ input: the tests' configuration."""
    from monai.networks.nets import DenseNet

    torch.manual_seed(0)
    net = DenseNet(spatial_dims=3, in_channels=1, out_channels=2, init_features=8, growth_rate=8, block_config=(2, 2))
    return net, Preprocessing(input_size=(32, 32, 32))


def cube_volume(size: int = SIZE) -> Volume:
    """The bundled CT phantom (64×96×96, HU) resampled trilinearly to ``size``³, as a CT Volume."""
    phantom = phantom_volume()
    array = resample(torch.from_numpy(phantom.array.copy())[None], (size, size, size))[0].numpy()
    spacing = tuple(s * n / size for s, n in zip(phantom.spacing, phantom.shape3d, strict=True))
    return Volume(array=np.ascontiguousarray(array, dtype=np.float32), spacing=spacing, kind="volume",  # type: ignore[arg-type]
                  modality="CT", window=phantom.window, description=f"CT phantom resampled to {size}³", units="HU")


# ---------------------------------------------------------------------------------------------------
# Memory


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextmanager
def _polled_peak(into: list[int]) -> Iterator[None]:
    """RSS polled every millisecond in a thread while the block runs; the highest value (kB) appended to ``into``."""
    done = threading.Event()
    seen = [_status_kb("VmRSS") or 0]

    def poll() -> None:
        while not done.wait(0.001):
            seen.append(_status_kb("VmRSS") or 0)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        into.append(max(seen))


def peak_memory(fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak RSS of ``fn()`` above the RSS before it (MB), how it was read, and tracemalloc's peak (MB)."""
    gc.collect()
    before = _status_kb("VmRSS")
    exact = _reset_peak()
    polled: list[int] = []
    tracemalloc.start()
    try:
        with _polled_peak(polled):
            fn()
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak = _status_kb("VmHWM") if exact else polled[0]
    if before is None or peak is None:
        return {"rss_before_mb": None, "rss_peak_over_before_mb": None, "source": "unavailable",
                "tracemalloc_peak_mb": traced_peak / 1e6}
    return {
        "rss_before_mb": before / 1024,
        "rss_peak_over_before_mb": max(peak - before, 0) / 1024,
        "source": "VmHWM after clear_refs" if exact else "VmRSS polled every 1 ms",
        "tracemalloc_peak_mb": traced_peak / 1e6,
    }


# ---------------------------------------------------------------------------------------------------
# A slice move on the Volumes page


def _depth_index(scan_slice: int, scan_depth: int, layer_depth: int) -> int:
    """As ``ui.volume_model_view.depth_index`` (the UI package imports Streamlit; this module must not)."""
    return min(layer_depth - 1, scan_slice * layer_depth // max(scan_depth, 1))


def slice_move(
    model: LoadedModel, volume: Volume, cached_maps: bytes, cached_cam: bytes, indices: dict[str, int]
) -> dict[str, float]:
    """One redraw after a slider moved: seconds per step (the figures built, then serialised as Streamlit does)."""
    t: dict[str, float] = {}
    clock = time.perf_counter
    start = clock()
    window = volume.window or (float(np.median(volume.array)), float(np.ptp(volume.array)) or 1.0)
    built = []
    for plane in PLANES:  # the viewer's three planes (ui/volume_view.py _planes)
        index = indices[plane]
        built.append(figures.plane_figure(
            volume.slice(plane, index), volume.slice_spacing(plane), plane=plane, index=index, window=window,
            units=volume.units, crosshair=figures.cut_lines(volume, plane, indices), sides=figures.ORIENTATION[plane],
            title=f"{plane} · slice {index}", height=380,
        ))
    t["planes_s"] = clock() - start
    mark = clock()
    maps = pickle.loads(cached_maps)  # st.cache_data hands every rerun its own copy
    result = pickle.loads(cached_cam)
    t["cache_hits_s"] = clock() - mark
    mark = clock()
    layers = [i for i in list_layers(model) if i.spatial and i.shape and len(i.shape) == 4]
    default_layer(model), default_cam_layer(model)
    t["layer_list_s"] = clock() - mark
    mark = clock()
    z = _depth_index(indices["axial"], volume.shape3d[0], int(maps.shape[1]))
    built.append(figures.mosaic_figure(np.ascontiguousarray(maps[:, z]), scale="shared", height=420))
    t["maps_s"] = clock() - mark
    mark = clock()
    overlays = {}
    for axis, plane in enumerate(PLANES):  # Grad-CAM stretched over the scan at the planes on screen only
        heat = upsample_plane(result.normalized, volume.shape3d, axis, indices[plane])
        one = Volume(array=np.expand_dims(heat, axis), spacing=volume.spacing, kind="volume", modality=None,
                     window=None, description="")
        overlays[plane] = one.slice(plane, 0)
    t["cam_upsample_s"] = clock() - mark
    mark = clock()
    for plane in PLANES:
        index = indices[plane]
        built.append(figures.plane_figure(
            volume.slice(plane, index), volume.slice_spacing(plane), plane=plane, index=index, window=window,
            units=volume.units, overlay=overlays[plane], sides=figures.ORIENTATION[plane],
            title=f"{plane} · slice {index}", height=360, showscale=plane == "sagittal",
        ))
    t["cam_planes_s"] = clock() - mark
    t["build_s"] = clock() - start
    mark = clock()
    sizes = [len(pio.to_json(fig, validate=False)) for fig in built]
    t["to_json_s"] = clock() - mark
    t["total_s"] = clock() - start
    t["json_bytes"] = float(sum(sizes))
    t["layers_listed"] = float(len(layers))
    return t


def _slice_moves(model: LoadedModel, volume: Volume, layer: str, moves: int) -> dict[str, Any]:
    """``moves`` axial slider moves (each to a slice not shown before), the model's results cached once."""
    maps = extract(model, volume, [layer]).activations[layer]
    result = compute_cam(model, volume, default_cam_layer(model), None, "gradcam")
    cached_maps, cached_cam = pickle.dumps(maps), pickle.dumps(result)
    depth = volume.shape3d[0]
    middle = {plane: volume.shape3d[i] // 2 for i, plane in enumerate(PLANES)}
    slice_move(model, volume, cached_maps, cached_cam, middle)  # warm-up
    runs = []
    for k in range(moves):
        axial = (depth // 2 + (k + 1) * max(1, depth // (moves + 2))) % depth
        runs.append(slice_move(model, volume, cached_maps, cached_cam, {**middle, "axial": axial}))
    steps = {key: summary([r[key] for r in runs]) for key in runs[0] if key.endswith("_s")}
    return {
        "volume_shape": list(volume.shape3d),
        "maps_shape": list(maps.shape),
        "cached_maps_mb": len(cached_maps) / 1e6,
        "cam_shape": list(result.cam.shape),
        "moves": moves,
        "steps": steps,
        "json_kb": runs[-1]["json_bytes"] / 1000,
        "target_s": SLICE_TARGET_S,
        "pass": steps["total_s"]["median"] is not None and steps["total_s"]["median"] <= SLICE_TARGET_S,
    }


# ---------------------------------------------------------------------------------------------------
# Extraction against a bare pass


def _extraction(model: LoadedModel, volume: Volume, layer: str, rounds: int, warmup: int) -> dict[str, Any]:
    module = model.module.eval()
    tensor, forward, pre_forward = bare_passes(module, lambda: model.preprocess_volume(volume))

    variants = {"forward": forward, "preprocess+forward": pre_forward,
                "extract": lambda: extract(model, volume, [layer])}
    times = interleaved(variants, rounds=rounds, warmup=warmup)
    stats = {name: summary(samples) for name, samples in times.items()}
    bare = stats["preprocess+forward"]["median"]
    over = ratio(stats["extract"]["median"], bare)
    return {
        "input_shape": list(tensor.shape),
        "layer": layer,
        "rounds": rounds,
        "timings": stats,
        "extract_over_bare": over,
        "extract_over_forward_only": ratio(stats["extract"]["median"], stats["forward"]["median"]),
        "target": EXTRACT_TARGET,
        "pass": over is not None and over <= EXTRACT_TARGET,
        "peak_extract": peak_memory(lambda: extract(model, volume, [layer])),
        "peak_bare": peak_memory(pre_forward),
    }


# ---------------------------------------------------------------------------------------------------
# A CT larger than featviz keeps


def ct_nifti_bytes(shape: tuple[int, int, int] = CT_SHAPE) -> bytes:
    """A CT-like scan of ``shape`` (z, y, x) as an uncompressed NIfTI-1 file of int16 HU: the phantom's tissues
    repeated onto the finer grid (nearest voxel), 0.7 × 0.7 × 1 mm voxels."""
    import nibabel as nib

    hu = phantom_volume().array
    axes = [np.arange(n) * m // n for n, m in zip(shape, hu.shape, strict=True)]
    ct = np.round(hu[np.ix_(*axes)]).astype(np.int16)  # (z, y, x) in RAS
    image = nib.Nifti1Image(ct.transpose(2, 1, 0), np.diag([*CT_SPACING_MM, 1.0]))  # NIfTI is stored (x, y, z)
    del ct
    return bytes(image.to_bytes())


def _large_ct(shape: tuple[int, int, int]) -> tuple[dict[str, Any], Volume]:
    data = ct_nifti_bytes(shape)
    name = "ct-" + "x".join(str(n) for n in shape[::-1]) + ".nii"
    start = time.perf_counter()
    volume = load_volume(data, name)
    seconds = time.perf_counter() - start
    memory = peak_memory(lambda: load_volume(data, name))  # a second read, traced (tracemalloc slows it)
    return {
        "file_shape": list(shape),
        "file_mb": 2 * int(np.prod(shape)) / 1e6,
        "load_s": seconds,
        "load_memory": memory,
        "kept_shape": list(volume.shape3d),
        "kept_mb": volume.array.nbytes / 1e6,
        "description": volume.description,
    }, volume


def run(
    rounds: int = 15, warmup: int = 2, moves: int = 9, spec: str = SPEC, size: int = SIZE,
    ct_shape: tuple[int, int, int] | None = CT_SHAPE,
) -> dict[str, Any]:
    """Extraction, peak memory and slice moves on a ``size``³ volume through the 3-D model ``spec``; then the same
    on a CT of ``ct_shape`` (None: skipped)."""
    model = load_from_code(spec)
    volume = cube_volume(size)
    layer = default_layer(model)
    out: dict[str, Any] = {
        "model": model.name, "spec": spec, "provenance": model.provenance, "torch_threads": torch.get_num_threads(),
        "volume": {"shape": list(volume.shape3d), "description": volume.description},
        "extraction": _extraction(model, volume, layer, rounds, warmup),
        "slice_move": _slice_moves(model, volume, layer, moves),
    }
    if ct_shape is not None:
        ct, ct_volume = _large_ct(ct_shape)
        ct["extract_memory"] = peak_memory(lambda: extract(model, ct_volume, [layer]))
        ct["slice_move"] = _slice_moves(model, ct_volume, layer, moves)
        out["large_ct"] = ct
    return out


# ---------------------------------------------------------------------------------------------------


def _mem(m: dict[str, Any]) -> str:
    rss = m["rss_peak_over_before_mb"]
    return f"{'–' if rss is None else f'{rss:.0f}'} MB RSS above the {m['rss_before_mb']:.0f} MB before " \
           f"({m['source']}), tracemalloc peak {m['tracemalloc_peak_mb']:.0f} MB"


def _slice_rows(label: str, s: dict[str, Any], ms: Callable[[float | None], str]) -> list[str]:
    st = s["steps"]
    return [f"| {label} ({'×'.join(str(n) for n in s['volume_shape'])}) | {ms(st['planes_s']['median'])} "
            f"| {ms(st['cache_hits_s']['median'])} | {ms(st['layer_list_s']['median'])} | {ms(st['maps_s']['median'])} "
            f"| {ms(st['cam_upsample_s']['median'])} | {ms(st['cam_planes_s']['median'])} "
            f"| {ms(st['build_s']['median'])} | {ms(st['to_json_s']['median'])} | **{ms(st['total_s']['median'])}** "
            f"({ms(st['total_s']['p25'])}–{ms(st['total_s']['p75'])}) | {s['json_kb']:.0f} "
            f"| ≤ {s['target_s'] * 1e3:.0f} ms: {'pass' if s['pass'] else '**FAIL**'} |"]


def markdown(r: dict[str, Any], ms: Callable[[float | None], str], x: Callable[..., str]) -> list[str]:
    """Section 12 of ``latest.md``."""
    e, t = r["extraction"], r["extraction"]["timings"]
    size = "×".join(str(n) for n in e["input_shape"][2:])
    lines = [
        f"### 12 · Volumes: a 3-D model on a {size} scan, slice moves, a CT too large to keep (medians)",
        "",
        f"`{r['spec']}` through `load_from_code`: {r['provenance']}; random seeded weights. bare = "
        "`model.preprocess_volume(volume)` + forward under `inference_mode`.",
        "",
        "| layer | forward ms | bare ms | extract ms (p25–p75) | extract / bare | target |",
        "|---|---:|---:|---:|---:|---|",
        f"| `{e['layer']}` | {ms(t['forward']['median'])} | {ms(t['preprocess+forward']['median'])} "
        f"| {ms(t['extract']['median'])} ({ms(t['extract']['p25'])}–{ms(t['extract']['p75'])}) "
        f"| {x(e['extract_over_bare'], 3)} | ≤ {e['target']:.2f}×: {'pass' if e['pass'] else '**FAIL**'} |",
        "",
        f"{e['rounds']} interleaved rounds; torch threads {r['torch_threads']}. Peak memory of one extraction: "
        f"{_mem(e['peak_extract'])}; of the bare pass: {_mem(e['peak_bare'])}.",
        "",
        "A slice move on the Volumes page (server side, the model's results cached; ms):",
        "",
        "| volume | 3 planes | cache copies | layer list | maps mosaic | CAM stretched | 3 CAM planes | build "
        "| JSON | total (p25–p75) | JSON kB | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += _slice_rows("the phantom", r["slice_move"], ms)
    ct = r.get("large_ct")
    if ct:
        lines += _slice_rows("the CT as kept", ct["slice_move"], ms)
        lines += [
            "",
            f"A {'×'.join(str(n) for n in ct['file_shape'][::-1])} CT (int16 NIfTI, {ct['file_mb']:.0f} MB): "
            f"`load_volume` kept {'×'.join(str(n) for n in ct['kept_shape'])} voxels ({ct['kept_mb']:.0f} MB float32) "
            f"in {ct['load_s']:.2f} s and says: “{ct['description']}”. Loading: {_mem(ct['load_memory'])}; "
            f"extracting from it: {_mem(ct['extract_memory'])}.",
        ]
    lines.append("")
    return lines
