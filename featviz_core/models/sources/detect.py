"""Which architecture a state dict belongs to: torchvision's and timm's, matched by every key and shape.

Each architecture is built once on the ``meta`` device (no memory, no initialisation) to learn its state
dict's keys and shapes (its *signature*, cached). A checkpoint's key names are fingerprinted and looked up
in an index of every architecture's fingerprint (torchvision's computed on first use, timm's from
:mod:`featviz_core.models.sources.timm_catalog`), so detection costs a few signature builds, not a scan of 1,400
architectures; every shape is then compared, so a lookup never picks a wrong architecture. The classifier's
first dimension (the number of classes) and the first convolution's input channels may differ.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torchvision
from torch import nn

from ...errors import ModelLoadError
from .meta import MetaAllocations, fingerprint
from .state_dicts import Variant, is_counter
from .torchvision import classification_models, video_models

__all__ = ["Arch", "Fit", "build", "checkpoint_architectures", "detect", "fit_for", "parse_arch", "signature"]

_log = logging.getLogger(__name__)

# Builders with auxiliary classifiers that a checkpoint may or may not contain.
_AUX_PREFIXES: dict[str, tuple[str, ...]] = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}
# An unusual class count for the probe builds: the entries whose first dimension equals it are the classifier.
_PROBE_CLASSES = 1013


@dataclass(frozen=True, order=True)
class Arch:
    """An architecture of one library: ``Arch("torchvision", "resnet18")``, ``Arch("timm", "resnet50d")``."""

    library: str
    name: str

    @property
    def label(self) -> str:
        return self.name if self.library == "torchvision" else f"{self.name} (timm)"

    def __str__(self) -> str:
        return self.label


@functools.lru_cache(maxsize=1)
def checkpoint_architectures() -> tuple[str, ...]:
    """torchvision's architectures a checkpoint may hold: the classifiers of pictures, then the video
    classifiers (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``), which open as 3-D models."""
    return (*classification_models(), *video_models())


def _timm_names() -> frozenset[str]:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is in requirements.txt
        return frozenset()
    return frozenset(timm.list_models())


def parse_arch(name: str) -> Arch | None:
    """``"resnet18"`` (torchvision first), ``"timm:resnet50d"``, ``"timm/resnet50d"``, ``"resnet50d"`` ->
    :class:`Arch`; None when no library has it. A timm weight tag (``".a1_in1k"``) is ignored."""
    text = name.strip()
    library = None
    for prefix in ("timm:", "timm/", "hf_hub:timm/", "hf-hub:timm/"):
        if text.lower().startswith(prefix):
            library, text = "timm", text[len(prefix) :]
    for prefix in ("torchvision:", "tv:"):
        if text.lower().startswith(prefix):
            library, text = "torchvision", text[len(prefix) :]
    if library != "timm" and text in checkpoint_architectures():
        return Arch("torchvision", text)
    arch = text.split(".")[0]
    if library != "torchvision" and arch in _timm_names():
        return Arch("timm", arch)
    return None


# ---------------------------------------------------------------------------------------------------
# Building and signatures


def _builder_kwargs(arch: str, aux: bool, in_channels: int) -> dict[str, Any]:
    if arch in _AUX_PREFIXES:
        # Fine-tuned from torchvision's pretrained weights, these take ImageNet-normalised input and
        # rescale it themselves (transform_input=True), as torchvision's pretrained models do.
        return {"aux_logits": aux, "init_weights": False, "transform_input": in_channels == 3}
    return {}


def build(arch: Arch, num_classes: int, aux: bool, in_channels: int = 3, first_conv: str | None = None,
          *, meta: bool = True) -> nn.Module:
    """``arch`` with ``num_classes`` outputs and ``in_channels`` inputs; on the meta device by default."""
    context = MetaAllocations() if meta else _Nothing()
    with context, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch.library == "timm":
            import timm

            return timm.create_model(arch.name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
        builder = torchvision.models.get_model_builder(arch.name)
        module = builder(weights=None, num_classes=num_classes, **_builder_kwargs(arch.name, aux, in_channels))
        if in_channels != 3 and first_conv is not None:
            _replace_first_conv(module, first_conv, in_channels)
    return module


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _replace_first_conv(module: nn.Module, name: str, in_channels: int) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    old = getattr(parent, child)
    if not isinstance(old, nn.Conv2d | nn.Conv3d) or old.groups != 1:
        raise ModelLoadError(f"The first convolution of this architecture cannot take {in_channels} inputs.")
    new = type(old)(
        in_channels,
        old.out_channels,
        old.kernel_size,  # type: ignore[arg-type]
        stride=old.stride,  # type: ignore[arg-type]
        padding=old.padding,  # type: ignore[arg-type]
        dilation=old.dilation,  # type: ignore[arg-type]
        groups=1,
        bias=old.bias is not None,
        padding_mode=old.padding_mode,
    )
    setattr(parent, child, new)


def _patterns(keys: Iterable[str]) -> frozenset[str]:
    return frozenset(re.sub(r"\d+", "#", k) for k in keys)


@dataclass(frozen=True)
class Signature:
    """What a state dict of one architecture looks like (every entry but the BatchNorm counters)."""

    arch: Arch
    shapes: dict[str, tuple[int, ...]]
    class_keys: frozenset[str]
    first_conv: str | None
    aux_keys: frozenset[str]
    keys: frozenset[str] = field(init=False)
    keys_without_aux: frozenset[str] = field(init=False)
    patterns: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        keys = frozenset(self.shapes)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "keys_without_aux", keys - self.aux_keys)
        object.__setattr__(self, "patterns", _patterns(keys))

    @property
    def first_conv_key(self) -> str | None:
        return f"{self.first_conv}.weight" if self.first_conv else None


@functools.lru_cache(maxsize=512)
def signature(arch: Arch) -> Signature | None:
    """The keys and shapes of ``arch``'s state dict (None if it cannot be built without memory)."""
    try:
        module = build(arch, _PROBE_CLASSES, aux=True)
    except Exception:  # noqa: BLE001 - an architecture we cannot probe is simply not a candidate
        _log.debug("cannot probe %s on the meta device", arch, exc_info=True)
        return None
    shapes = {k: tuple(t.shape) for k, t in module.state_dict().items() if not is_counter(k)}
    first_conv = next((n for n, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Conv3d)), None)
    aux_prefixes = _AUX_PREFIXES.get(arch.name, ()) if arch.library == "torchvision" else ()
    return Signature(
        arch=arch,
        shapes=shapes,
        class_keys=frozenset(k for k, s in shapes.items() if s and s[0] == _PROBE_CLASSES),
        first_conv=first_conv,
        aux_keys=frozenset(k for k in shapes if aux_prefixes and k.startswith(aux_prefixes)),
    )


@functools.lru_cache(maxsize=1)
def _torchvision_families() -> dict[str, tuple[str, ...]]:
    """Architectures grouped by the torchvision module that defines them (resnet, efficientnet ...)."""
    groups: dict[str, list[str]] = {}
    for name in checkpoint_architectures():
        family = torchvision.models.get_model_builder(name).__module__
        groups.setdefault(family, []).append(name)
    return {family: tuple(names) for family, names in groups.items()}


TORCHVISION_INDEX = Path(__file__).with_name("torchvision_fingerprints.json")
"""Every torchvision architecture's key fingerprints (video classifiers included), for the torchvision version named in the file; made by
``python -m featviz_core.models.sources.detect`` (building all 84 on the meta device takes 10–20 s on 2 cores)."""


def torchvision_fingerprints() -> dict[str, list[str]]:
    """Architecture -> fingerprints of its keys with and without auxiliary classifiers (slow: builds all)."""
    found = {}
    for name in checkpoint_architectures():
        sig = signature(Arch("torchvision", name))
        if sig is not None:
            found[name] = sorted({fingerprint(sig.keys), fingerprint(sig.keys_without_aux)})
    return found


@functools.lru_cache(maxsize=1)
def _torchvision_index() -> dict[str, tuple[Arch, ...]]:
    """Key fingerprint -> torchvision architectures: from the shipped file when it was made for the installed
    torchvision, else computed once (every shape is compared afterwards either way)."""
    table: dict[str, list[str]] | None = None
    try:
        data = json.loads(TORCHVISION_INDEX.read_text(encoding="utf-8"))
        if data.get("torchvision") == torchvision.__version__:
            table = data["architectures"]
    except (OSError, ValueError, KeyError, AttributeError):
        table = None
    if table is None:
        table = torchvision_fingerprints()
    index: dict[str, list[Arch]] = {}
    for name, fps in table.items():
        for fp in fps:
            index.setdefault(fp, []).append(Arch("torchvision", name))
    return {fp: tuple(archs) for fp, archs in index.items()}


def _timm_index() -> dict[str, tuple[Arch, ...]]:
    from .timm_catalog import fingerprint_index

    return {fp: tuple(Arch("timm", n) for n in names) for fp, names in fingerprint_index().items()}


# ---------------------------------------------------------------------------------------------------
# Matching


@dataclass(frozen=True)
class Fit:
    """How one variant of the checkpoint compares with one architecture."""

    arch: Arch
    variant: Variant
    aux: bool
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = ()
    class_counts: tuple[int, ...] = ()
    in_channels: int = 3
    overlap: float = 0.0
    alternatives: tuple[Arch, ...] = ()  # other architectures the weights fit just as well

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched) and len(self.class_counts) == 1

    @property
    def num_classes(self) -> int:
        return self.class_counts[0]


def compare(sig: Signature, variant: Variant) -> Fit:
    state, keys = variant.state, variant.keys
    aux = bool(sig.aux_keys & keys)
    expected = sig.keys if aux else sig.keys_without_aux
    union = len(keys | expected)
    overlap = len(keys & expected) / union if union else 0.0
    if keys != expected:
        missing = tuple(k for k in sig.shapes if k in expected and k not in keys)
        unexpected = tuple(k for k in state if k not in expected and not is_counter(k))
        return Fit(sig.arch, variant, aux, missing=missing, unexpected=unexpected, overlap=overlap)
    mismatched = []
    counts = []
    first_conv_key = sig.first_conv_key
    for key in sig.shapes:
        if key not in expected:
            continue
        want, have = sig.shapes[key], tuple(state[key].shape)
        if len(want) != len(have):
            same = False
        elif key in sig.class_keys:
            same = want[1:] == have[1:]
            counts.append(have[0])
        elif key == first_conv_key:
            same = want[:1] + want[2:] == have[:1] + have[2:]
        else:
            same = want == have
        if not same:
            mismatched.append((key, have, want))
    in_channels = 3
    if first_conv_key in state and state[first_conv_key].ndim in (4, 5):
        in_channels = int(state[first_conv_key].shape[1])
    return Fit(
        sig.arch,
        variant,
        aux,
        mismatched=tuple(mismatched),
        class_counts=tuple(dict.fromkeys(counts)),
        in_channels=in_channels,
        overlap=overlap,
    )


def _best_fit(sig: Signature, variants: list[Variant]) -> Fit:
    """The variant that fits ``sig``, or else the one closest to it."""
    best: Fit | None = None
    for variant in variants:
        fit = compare(sig, variant)
        if fit.ok:
            return fit
        if best is None or fit.overlap > best.overlap:
            best = fit
    assert best is not None
    return best


def _preference(arch: Arch, hints: list[Arch]) -> tuple[int, int, int, int, str]:
    """Hinted first, then torchvision (today's behaviour), then timm's plainest name."""
    return (
        hints.index(arch) if arch in hints else len(hints),
        arch.library != "torchvision",
        arch.name.startswith(("tf_", "legacy_", "gluon_")),
        len(arch.name),
        arch.name,
    )


def detect(variants: list[Variant], hints: list[Arch]) -> Fit:
    """The architecture whose keys and shapes the checkpoint has; ModelLoadError saying what is closest."""
    for arch in hints:
        sig = signature(arch)
        if sig is not None and (fit := _best_fit(sig, variants)).ok:
            return fit
    for variant in variants:
        fp = fingerprint(variant.keys)
        candidates = [*_torchvision_index().get(fp, ()), *_timm_index().get(fp, ())]
        fits = []
        for arch in dict.fromkeys(candidates):
            sig = signature(arch)
            if sig is not None and (fit := compare(sig, variant)).ok:
                fits.append(fit)
        if fits:
            fits.sort(key=lambda f: _preference(f.arch, hints))
            best = fits[0]
            return Fit(**{**best.__dict__, "alternatives": tuple(f.arch for f in fits[1:])})
    raise ModelLoadError(
        "No torchvision or timm architecture matches this checkpoint." + _closest(variants) + " Choose the "
        "architecture explicitly, or save the state dict of a torchvision or timm model, e.g. "
        'torch.save(timm.create_model("resnet50", num_classes=3).state_dict(), "model.pt"). For a model '
        "class of your own, start featviz with --model your_module:factory (see the README)."
    )


def _closest(variants: list[Variant]) -> str:
    """" The closest is resnet50: ..." for the torchvision family whose key patterns look most alike."""
    variant_patterns = [_patterns(variant.keys) for variant in variants]
    scored = []
    for names in _torchvision_families().values():
        sig = next((s for s in (signature(Arch("torchvision", n)) for n in names) if s is not None), None)
        if sig is not None:
            score = max(len(p & sig.patterns) / len(p | sig.patterns) for p in variant_patterns)
            scored.append((score, names))
    scored.sort(key=lambda item: -item[0])
    closest: Fit | None = None
    for _score, names in scored[:2]:
        for name in names:
            sig = signature(Arch("torchvision", name))
            if sig is not None:
                fit = _best_fit(sig, variants)
                if closest is None or fit.overlap > closest.overlap:
                    closest = fit
    if closest is not None and closest.overlap >= 0.5:
        return f" The closest is {closest.arch}: {describe_misfit(closest)}"
    return ""


def fit_for(arch: Arch, variants: list[Variant], hints: list[Arch]) -> Fit:
    sig = signature(arch)
    if sig is None:
        raise ModelLoadError(f"featviz cannot load checkpoints for {arch}; choose another architecture.")
    fit = _best_fit(sig, variants)
    if fit.ok:
        return fit
    suggestion = ""
    try:
        other = detect(variants, hints)
        suggestion = f" It does fit {other.arch}: choose that one, or let featviz detect the architecture."
    except ModelLoadError:
        pass
    raise ModelLoadError(f"The checkpoint does not fit {arch}: {describe_misfit(fit)}{suggestion}")


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "scalar"


def _few(keys: Iterable[str], limit: int = 3) -> str:
    keys = list(keys)
    text = ", ".join(keys[:limit])
    return text + (", ..." if len(keys) > limit else "")


def describe_misfit(fit: Fit) -> str:
    parts = []
    if fit.missing:
        parts.append(f"{len(fit.missing)} weights it needs are missing from the file ({_few(fit.missing)})")
    if fit.unexpected:
        parts.append(f"{len(fit.unexpected)} weights in the file are not part of it ({_few(fit.unexpected)})")
    if fit.mismatched:
        examples = [
            f"{k} is {_shape(have)} in the file but {_shape(want)} in {fit.arch}"
            for k, have, want in fit.mismatched[:3]
        ]
        more = ", ..." if len(fit.mismatched) > 3 else ""
        parts.append(f"{len(fit.mismatched)} weights have other shapes ({'; '.join(examples)}{more})")
    if not parts and len(fit.class_counts) > 1:
        counts = " and ".join(map(str, fit.class_counts))
        parts.append(f"its classifiers disagree on the number of classes ({counts})")
    return "; ".join(parts) + "."


if __name__ == "__main__":  # python -m featviz_core.models.sources.detect: rewrite the torchvision index
    TORCHVISION_INDEX.write_text(
        json.dumps({"torchvision": torchvision.__version__, "architectures": torchvision_fingerprints()},
                   indent=0, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    print(f"wrote {TORCHVISION_INDEX}", file=sys.stderr)
