"""The Ray Data path gives exactly the DataLoader path's result (a local Ray instance with 2 workers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from featviz_core import find_exemplars
from featviz_core.demo import load_demo
from featviz_core.exemplars.search import EmptyCollectionError
from tests.data_builders import broken_bytes, jpeg_bytes, picture, png_bytes

ray = pytest.importorskip("ray", reason="ray is not installed: pip install -r requirements-ray.txt")
pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install -r requirements-ray.txt")

from featviz_core.exemplars.on_ray import find_exemplars_ray  # noqa: E402

LAYER = "block2.relu1"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")  # Ray's own settings


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray_images")
    for i in range(45):
        path = root / ("nested" if i % 4 == 0 else "") / f"img{i:02d}.{'jpg' if i % 3 else 'png'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = picture(seed=200 + i, size=(64 + (i % 3) * 10, 60))
        path.write_bytes(jpeg_bytes(image) if i % 3 else png_bytes(image))
    (root / "broken.png").write_bytes(broken_bytes())
    (root / "readme.txt").write_text("not an image")
    return root


def test_ray_gives_exactly_the_dataloader_result(local_ray: None, folder: Path) -> None:
    seen: list[tuple[int, int]] = []
    on_ray = find_exemplars_ray("demo", LAYER, folder, k=6, batch_size=8, workers=2,
                                progress=lambda done, total, _p: seen.append((done, total)))
    here = find_exemplars(load_demo(), LAYER, folder, k=6, batch_size=8, num_workers=0)
    assert on_ray.count == here.count == 45 and on_ray.files == here.files == 47
    assert on_ray.failed == here.failed and [n for n, _ in here.failed] == ["broken.png", "readme.txt"]
    for side in ("top", "bottom"):
        for field in ("peak", "mean", "pos"):
            np.testing.assert_array_equal(getattr(on_ray, f"{side}_{field}"), getattr(here, f"{side}_{field}"))
    for channel in range(here.channels):
        assert on_ray.top(channel) == here.top(channel) and on_ray.bottom(channel) == here.bottom(channel)
    assert on_ray.receptive_field == here.receptive_field
    assert seen and seen[-1] == (47, 47) and all(total == 47 for _, total in seen)
    assert np.array_equal(np.asarray(on_ray.patch(0, 0)), np.asarray(here.patch(0, 0)))


def test_ray_on_an_empty_folder_is_one_sentence(local_ray: None, tmp_path: Path) -> None:
    with pytest.raises(EmptyCollectionError, match="There are no image files"):
        find_exemplars_ray("demo", LAYER, tmp_path, workers=2)
