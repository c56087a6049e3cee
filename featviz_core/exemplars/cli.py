"""``python -m featviz_core.exemplars``: exemplars of a large collection from the terminal, with a progress bar.

    python -m featviz_core.exemplars --model tv:resnet18 --layer layer3.1.relu#2 --images ~/xrays --out ex.npz
    python -m featviz_core.exemplars --model demo --list-layers
    python -m featviz_core.exemplars --demo        # the bundled examples, nothing to give (the demo model)

The model is any string the app's command line takes (demo, tv:NAME[:random], timm:NAME[:random], a
.pth/.safetensors/.onnx file, package.module:factory with --weights/--classes). The result file opens on the
app's Exemplars page ("Saved result"); its pictures show there when the app was started with the same folder
(``--images``). ``--demo`` reads the bundled examples (:mod:`.demo_collection`, offline) instead of a folder,
with the demo model unless ``--model`` says otherwise; the app's "Saved result" shows their pictures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from featviz.options import NORMALIZATIONS, input_size

from ..errors import FeatvizError

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m featviz_core.exemplars",
        description="Find the images of a collection that excite each channel of a layer most (and least).",
    )
    p.add_argument("--model", help="demo, tv:resnet18[:random], timm:NAME[:random], a .pth/.safetensors/.onnx "
                   "file, or package.module:factory (default with --demo: demo)")
    p.add_argument("--weights", help="weights for a package.module:factory model")
    p.add_argument("--classes", help="class names, one per line")
    p.add_argument("--input-size", type=input_size, help="input size for ONNX or your own model, e.g. 224 or 256x320")
    p.add_argument("--normalization", choices=NORMALIZATIONS,
                   help="input scaling for ONNX or your own model")
    p.add_argument("--layer", help="layer name (see --list-layers); default: a mid-level layer")
    p.add_argument("--list-layers", action="store_true", help="print the model's layers with feature maps and stop")
    p.add_argument("--images", help="a folder of images (nested folders included) or a .zip file")
    p.add_argument("--demo", action="store_true", help="read the bundled examples instead of --images: the "
                   "sample photos and pictures of the demo model's shapes, made on the spot (offline)")
    p.add_argument("--out", default="exemplars.npz", help="where to write the result (.npz; default %(default)s)")
    p.add_argument("--parquet", help="also write the table as Parquet to this path (needs pyarrow)")
    p.add_argument("-k", "--top", type=int, default=9, dest="k", help="images kept per channel (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default %(default)s)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: one per spare core, ≤ 4)")
    p.add_argument("--ray", action="store_true", help="run on Ray Data (pip install -r requirements-ray.txt)")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray actors, each with its own model (default %(default)s)")
    p.add_argument("--ray-address", help="a running Ray cluster (default: the one running, or a local one)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else (
        f"{seconds // 60}:{seconds % 60:02d}")


class ProgressBar:
    """``[#######.......]  1,200/2,000 images · 85.3 images/s · 0:09 left · 2 failed`` on one terminal line."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream, self.width = stream if stream is not None else sys.stderr, width
        self._first: tuple[float, int] | None = None  # (time, done) at the first batch: the rate counts from there
        self._last = 0.0

    def __call__(self, done: int, total: int, preview: Any = None) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = (now, done)
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        started, before = self._first
        rate = (done - before) / (now - started) if now > started and done > before else 0.0
        filled = int(self.width * done / total) if total else self.width
        left = f" · {_clock((total - done) / rate)} left" if rate and done < total else ""
        failed = getattr(preview, "failed", 0)
        bad = f" · {failed} failed" if failed else ""
        line = (f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done:,}/{total:,} images · {rate:.1f} images/s"
                f"{left}{bad}")
        self.stream.write(line.ljust(90))
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options that do not go together end the command with a usage message (exit status 2)."""
    if args.demo:
        args.model = args.model or "demo"
        if args.images:
            p.error("give either --images or --demo, not both")
        if args.ray:
            p.error("--demo runs here; --ray reads a folder every Ray worker can open (give it with --images)")
    elif not args.model:
        p.error("give the model with --model (or --demo for the bundled examples and the demo model)")


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    _check(p, args)
    from ..layers.discovery import default_layer, spatial_layers
    from ..models.sources import load_spec

    load_kwargs: dict[str, Any] = {"weights": args.weights, "classes": args.classes,
                                   "input_size": args.input_size, "normalization": args.normalization}
    bar: ProgressBar | None = None
    try:
        model = load_spec(args.model, **load_kwargs)
        if args.list_layers:
            for info in spatial_layers(model):
                print(info.label)
            return 0
        if not args.images and not args.demo:
            print("Give the images with --images FOLDER (or a .zip file), or --demo for the bundled examples.",
                  file=sys.stderr)
            return 2
        layer = args.layer or default_layer(model)
        bar = None if args.quiet else ProgressBar()
        images: Any = args.images
        if args.demo:
            from .demo_collection import demo_collection

            images = demo_collection()
            print(f"{model.name} · layer {layer} · {images.label}: {len(images)} pictures made here, offline",
                  file=sys.stderr)
        else:
            print(f"{model.name} · layer {layer} · images in {args.images}", file=sys.stderr)
        if args.ray:
            from .on_ray import find_exemplars_ray

            result = find_exemplars_ray(args.model, layer, args.images, k=args.k, batch_size=args.batch_size,
                                        workers=args.ray_workers, progress=bar, load_kwargs=load_kwargs,
                                        address=args.ray_address)
        else:
            from .search import find_exemplars

            result = find_exemplars(model, layer, images, k=args.k, batch_size=args.batch_size,
                                    progress=bar, num_workers=args.workers)
    except FeatvizError as exc:
        if bar is not None:
            bar.close()
        print(str(exc), file=sys.stderr)
        for name, reason in getattr(exc, "failed", ())[:50]:
            print(f"  {name}: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print("Stopped; nothing was written.", file=sys.stderr)
        return 130
    if bar is not None:
        bar.close()
    out = result.save(Path(args.out))
    if args.parquet:
        try:
            Path(args.parquet).write_bytes(result.parquet_bytes())
        except FeatvizError as exc:
            print(str(exc), file=sys.stderr)
    rate = result.count / result.seconds if result.seconds > 0 else 0.0
    print(f"{result.count:,} images read in {result.seconds:.1f} s ({rate:.1f} images/s); "
          f"{len(result.failed)} could not be read. Written to {out}.", file=sys.stderr)
    for name, reason in result.failed[:20]:
        print(f"  {name}: {reason}", file=sys.stderr)
    if len(result.failed) > 20:
        print(f"  … and {len(result.failed) - 20} more (all are listed in the result file).", file=sys.stderr)
    return 0
