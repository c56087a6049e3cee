"""The shipped sample images and their provenance."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from featviz_core.errors import ImageLoadError
from featviz_core.images import Sample, default_sample, list_samples, sample_bytes, sample_path
from featviz_core.images.samples import SAMPLES_DIR

LICENSES = SAMPLES_DIR / "LICENSES.md"


def test_samples_are_well_formed() -> None:
    samples = list_samples()
    assert len(samples) >= 6
    assert len({s.name for s in samples}) == len(samples)
    assert {s.kind for s in samples} == {"photo", "demo"}
    for sample in samples:
        assert isinstance(sample, Sample)
        assert sample.name.isidentifier() and sample.name == sample.name.lower()
        assert sample.title and sample.description.endswith(".")
        assert "\n" not in sample.description


@pytest.mark.parametrize("sample", list_samples(), ids=lambda s: s.name)
def test_every_sample_exists_and_decodes(sample: Sample) -> None:
    path = sample_path(sample.name)
    assert path.is_file() and path.name == sample.filename
    data = sample_bytes(sample.name)
    assert data == path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert min(image.size) >= 64
        if sample.kind == "demo":
            assert image.size == (256, 256) and image.mode == "RGB"


def test_every_shipped_file_is_listed_and_named_in_the_provenance() -> None:
    assert LICENSES.is_file()
    text = LICENSES.read_text(encoding="utf-8")
    shipped = {p.name for p in SAMPLES_DIR.iterdir() if p.is_file() and p.name != "LICENSES.md"}
    assert shipped == {s.filename for s in list_samples()}
    for filename in shipped:
        assert filename in text, f"{filename} has no provenance in LICENSES.md"
    assert "featviz_core/demo/shapes.py" in text and "CC0" in text


def test_default_samples() -> None:
    kinds = {s.name: s.kind for s in list_samples()}
    assert kinds[default_sample(for_demo=False)] == "photo"
    assert default_sample(for_demo=False) == "chelsea"
    assert kinds[default_sample(for_demo=True)] == "demo"


def test_unknown_sample_names_the_choices() -> None:
    for call in (sample_bytes, sample_path):
        with pytest.raises(ImageLoadError) as info:
            call("dog")
        message = str(info.value)
        assert "'dog'" in message
        assert all(s.name in message for s in list_samples())
