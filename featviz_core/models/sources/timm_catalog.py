"""timm's architectures as featviz lists them: families, which of them give feature maps, fingerprints.

``timm_catalog.json`` beside this file is made by ``python -m featviz_core.models.sources.timm_catalog`` (a few
minutes: every architecture is built once on the meta device, and one small member of each family runs a
real forward pass). It holds, for the timm version it was made with:

- per family (timm's model module: ``resnet``, ``efficientnet`` ...): a title and whether its layers give
  feature maps (at least 40 % of the module calls of a forward pass output maps: channels × height × width,
  channels-last, or a vision transformer's tokens on its patch grid, see :mod:`featviz_core.layers.layout`;
  so ViT, DeiT, EVA, BEiT, DINOv2 and CLIP towers are listed too);
- per architecture: its family, parameter count, and the fingerprint of its state dict's key names, which
  finds the architecture of a user's checkpoint in one lookup (:mod:`featviz_core.models.sources.detect` then
  checks every shape, so an out-of-date catalog can miss an architecture but never picks a wrong one).

With another timm version installed the catalog is still used; architectures it does not know are still
loadable by name, only not offered in the menu.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CATALOG_PATH", "TimmArch", "architectures", "catalog", "family_title", "fingerprint_index"]

CATALOG_PATH = Path(__file__).with_name("timm_catalog.json")

# Titles for the families people look for; others are title-cased from the module name.
_TITLES = {
    "resnet": "ResNet / ResNet-D / SE-ResNet / ResNeXt", "resnetv2": "ResNet V2 (BiT)", "efficientnet":
    "EfficientNet / MobileNet V2 / MixNet / FBNet", "mobilenetv3": "MobileNet V3", "mobilenetv5": "MobileNet V5",
    "convnext": "ConvNeXt", "regnet": "RegNet", "densenet": "DenseNet", "vgg": "VGG", "dla": "DLA",
    "cspnet": "CSPNet / DarkNet", "nfnet": "NFNet", "byobnet": "BYOB nets (RepVGG, GENet, MobileOne)",
    "byoanet": "BYOB attention nets (BotNet, HaloNet)", "maxxvit": "MaxViT / CoAtNet", "hrnet": "HRNet",
    "inception_v3": "Inception V3", "inception_v4": "Inception V4", "inception_resnet_v2": "Inception-ResNet V2",
    "xception": "Xception", "xception_aligned": "Xception (aligned)", "res2net": "Res2Net", "resnest": "ResNeSt",
    "senet": "SENet (legacy)", "sknet": "SKNet", "tresnet": "TResNet", "rexnet": "ReXNet", "ghostnet": "GhostNet",
    "hgnet": "HGNet", "repvit": "RepViT", "repghost": "RepGhost", "fastvit": "FastViT", "mobilevit": "MobileViT",
    "edgenext": "EdgeNeXt", "efficientvit_mit": "EfficientViT (MIT)", "efficientvit_msra": "EfficientViT (MSRA)",
    "efficientformer_v2": "EfficientFormer V2", "metaformer": "MetaFormer (PoolFormer, ConvFormer, CAFormer)",
    "inception_next": "InceptionNeXt", "mambaout": "MambaOut", "swin_transformer": "Swin Transformer",
    "swin_transformer_v2": "Swin Transformer V2", "swin_transformer_v2_cr": "Swin Transformer V2 (CR)",
    "focalnet": "FocalNet", "davit": "DaViT", "gcvit": "GCViT", "nextvit": "Next-ViT", "starnet": "StarNet",
    "vision_transformer_hybrid": "ViT hybrids (ResNet stem)", "dpn": "DPN", "vovnet": "VoVNet",
    "selecsls": "SelecSLS", "nasnet": "NASNet", "pnasnet": "PNASNet", "hardcorenas": "HardCoRe-NAS",
    "convmixer": "ConvMixer", "rdnet": "RDNet", "fasternet": "FasterNet", "lcnetv2": "LCNet V2",
    "vision_transformer": "Vision Transformer (ViT, DINOv2, CLIP, SigLIP)", "deit": "DeiT", "eva": "EVA / EVA-02",
    "beit": "BEiT", "cait": "CaiT", "pit": "PiT", "xcit": "XCiT", "levit": "LeViT", "pvt_v2": "PVT v2",
    "mvitv2": "MViT v2", "vision_transformer_sam": "SAM ViT", "vision_transformer_relpos": "ViT (relative position)",
}  # fmt: skip


@dataclass(frozen=True)
class TimmArch:
    """One timm architecture as the menu shows it."""

    name: str
    family: str  # timm's module name
    params: int | None
    maps: bool

    @property
    def title(self) -> str:
        return family_title(self.family)


def family_title(module: str) -> str:
    return _TITLES.get(module, module.replace("_", " ").title())


@lru_cache(maxsize=1)
def catalog() -> dict[str, Any]:
    """The catalog file's contents (empty tables when the file is missing or unreadable)."""
    try:
        data = json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"timm": None, "families": {}, "architectures": {}}
    return data if isinstance(data, dict) else {"timm": None, "families": {}, "architectures": {}}


def architectures(maps_only: bool = True) -> list[TimmArch]:
    """Every catalogued timm architecture (only those whose layers give feature maps, by default)."""
    data = catalog()
    families = data.get("families", {})
    found = []
    for name, entry in data.get("architectures", {}).items():
        family = entry.get("family", "")
        maps = bool(families.get(family, {}).get("maps", False))
        if maps or not maps_only:
            found.append(TimmArch(name, family, entry.get("params"), maps))
    return found


@lru_cache(maxsize=1)
def fingerprint_index() -> dict[str, tuple[str, ...]]:
    """State-dict key fingerprint -> the timm architectures with exactly those keys."""
    index: dict[str, list[str]] = {}
    for name, entry in catalog().get("architectures", {}).items():
        fp = entry.get("fingerprint")
        if isinstance(fp, str):
            index.setdefault(fp, []).append(name)
    return {fp: tuple(names) for fp, names in index.items()}


# ---------------------------------------------------------------------------------------------------
# Making the catalog (slow; run by hand when timm is upgraded)


def _meta_entry(name: str) -> dict[str, Any] | None:
    import timm

    from .meta import MetaAllocations, fingerprint
    from .state_dicts import is_counter

    try:
        with warnings.catch_warnings(), MetaAllocations():
            warnings.simplefilter("ignore")
            module = timm.create_model(name, pretrained=False)
    except Exception:  # noqa: BLE001 - an architecture that cannot be built here is left out
        return None
    keys = [k for k in module.state_dict() if not is_counter(k)]
    return {"params": int(sum(p.numel() for p in module.parameters())), "fingerprint": fingerprint(keys)}


# Families whose 4-D tensors are not images: NesT keeps (batch, blocks, tokens, channels).
_NOT_MAPS = {"nest"}
MAPS_SHARE = 0.4


def _gives_maps(name: str) -> bool:
    """A real forward pass of random weights: are most of its module calls feature maps (token maps count)?"""
    import timm
    import torch

    from ...layers.discovery import list_layers
    from .timm import loaded_timm  # the same preprocessing the app uses

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = timm.create_model(name, pretrained=False).eval()
    model = loaded_timm(module, name, pretrained=False, tag=None)
    leaves = [info for info in list_layers(model) if info.is_leaf and info.calls > 0]
    spatial = [info for info in leaves if info.spatial]
    return bool(leaves) and len(spatial) / len(leaves) >= MAPS_SHARE


def build_catalog(
    names: Iterable[str] | None = None, log: Any = print, reuse: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The catalog for the installed timm; ``reuse``: take the architectures' entries from an earlier
    catalog of the same timm version and only probe the families again."""
    import timm
    import timm.models._registry as registry

    chosen = list(names) if names is not None else timm.list_models()
    started = time.perf_counter()
    entries: dict[str, dict[str, Any]] = {}
    if reuse is not None and reuse.get("timm") == timm.__version__:
        entries = dict(reuse["architectures"])
        chosen = []
    for i, name in enumerate(chosen):
        entry = _meta_entry(name)
        if entry is not None:
            entry["family"] = registry._model_to_module.get(name, "other")
            entries[name] = entry
        if i % 100 == 0:
            log(f"{i}/{len(chosen)} architectures, {time.perf_counter() - started:.0f} s")
    families: dict[str, dict[str, Any]] = {}
    by_family: dict[str, list[str]] = {}
    for name, entry in entries.items():
        by_family.setdefault(entry["family"], []).append(name)
    for family, members in sorted(by_family.items()):
        smallest = min(members, key=lambda n: (entries[n]["params"], n))
        try:
            maps = family not in _NOT_MAPS and _gives_maps(smallest)
        except Exception as exc:  # noqa: BLE001 - a family whose smallest member cannot run is not listed
            log(f"{family}: {smallest} did not run ({type(exc).__name__}); not listed")
            maps = False
        families[family] = {"title": family_title(family), "maps": maps, "probe": smallest}
        log(f"{family}: {'maps' if maps else 'tokens only'} (probe {smallest})")
    return {"timm": timm.__version__, "families": families, "architectures": entries}


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rebuild featviz's timm catalog (a few minutes).")
    parser.add_argument("--out", type=Path, default=CATALOG_PATH)
    parser.add_argument("--families-only", action="store_true", help="keep the architectures, probe families again")
    args = parser.parse_args(argv)
    data = build_catalog(reuse=catalog() if args.families_only else None)
    args.out.write_text(json.dumps(data, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(data['architectures'])} architectures, {len(data['families'])} families")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
