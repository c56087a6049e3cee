"""Never a false map: one small model of every timm family (tests/data/timm_families.json: the architecture, the
smallest input side it accepts, a few built shallower), every listed map on the input's grid at a power-of-2
stride or on the model's own patch/stage grid, none an attention internal. About a minute on 2 busy CPUs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from featviz_core import list_layers
from featviz_core.layers import token_grid
from tests.test_layout import INTERNAL, build_timm

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py

# family -> (architecture, input side, extra kwargs, built for that side with img_size): the smallest size each
# family accepts (a few shallower: depth=2), found by trying 56, 64, 96 ... px; SAM's ViT and Hiera at 224 (their
# windows cover a smaller input only padded) and MobileNetV5 at 128 (its fusion adapter outputs 16×16).
FAMILIES: dict[str, tuple[str, int, dict[str, Any], bool]] = json.loads(
    (Path(__file__).with_name("data") / "timm_families.json").read_text()
)


def _catalog_families() -> list[str]:
    from featviz_core.models.sources.timm_catalog import catalog

    return sorted(catalog()["families"])


VALID_PADDING = {"inception_v3", "inception_v4", "inception_resnet_v2"}
"""Families whose padding-free convolutions lose a few positions at each stride."""


def _stride_grid(h: int, w: int, size: tuple[int, int], grids: set[tuple[int, int]], slack: int) -> bool:
    """The input seen at a power-of-2 stride (within rounding, ``slack`` positions fewer), or a stated grid."""
    if (h, w) in grids:
        return True

    def near(value: int, target: float) -> bool:
        return target - max(1.5, 0.12 * target) - slack <= value <= target + max(1.5, 0.12 * target)

    return any(near(h, size[0] / 2**k) and near(w, size[1] / 2**k) for k in range(8))


@pytest.mark.parametrize("family", _catalog_families())
def test_no_false_map_in_any_timm_family(family: str) -> None:
    if family not in FAMILIES:
        pytest.skip(f"{family}: not in tests/data/timm_families.json (a newer timm); add it there")
    name, side, kwargs, sized = FAMILIES[family]
    model = build_timm(name, (side, side), **({"img_size": side} if sized else {}), **kwargs)
    stated = token_grid(model.module, model.input_size)
    grids = set(stated.stage_grids()) if stated is not None else set()
    maps = [info for info in list_layers(model) if info.spatial]
    assert maps, f"{family}: no feature map at all"
    for info in maps:
        h, w = info.shape[1:]
        slack = 6 if family in VALID_PADDING else 0
        assert _stride_grid(h, w, model.input_size, grids, slack), f"{family}: {info.label} is not on its grid"
        assert not any(part in info.name.lower().split(".") for part in INTERNAL), info.label
