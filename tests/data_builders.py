"""Small test files built in memory: images in common formats, a DICOM scan, a broken file, and
a seeded random resnet18 state dict saved where torchvision looks for its ImageNet weights."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

RESNET18_FILE = "resnet18-f37072fd.pth"
"""torchvision's file name for resnet18's ImageNet weights (in ``$TORCH_HOME/hub/checkpoints``)."""


def picture(seed: int = 0, size: tuple[int, int] = (120, 96)) -> Image.Image:
    """An RGB picture with smooth colours, a few shapes and some noise: different for every seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, 3)
    base = np.stack(
        [127 + 100 * np.sin(xx / (9 + 4 * k) + yy / (13 + 3 * k) + phase[k]) for k in range(3)], axis=-1
    )
    base += rng.normal(0, 12, base.shape)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = int(rng.integers(0, width - 30)), int(rng.integers(0, height - 30))
        size_ = int(rng.integers(12, 30))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x0 + size_, y0 + size_), fill=colour)
        else:
            draw.rectangle((x0, y0, x0 + size_, y0 + size_), fill=colour)
    return image


def png_bytes(image: Image.Image | None = None, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    (image or picture(seed)).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image | None = None, seed: int = 1, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    (image or picture(seed)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def dicom_bytes(seed: int = 2, size: tuple[int, int] = (96, 112)) -> bytes:
    """A 16-bit MONOCHROME2 secondary-capture DICOM file (with a window) of a bright disc on noise."""
    from pydicom import dcmwrite, uid
    from pydicom.dataset import Dataset, FileMetaDataset

    rng = np.random.default_rng(seed)
    rows, cols = size
    yy, xx = np.mgrid[0:rows, 0:cols]
    disc = ((yy - rows / 2) ** 2 + (xx - cols / 2) ** 2) < (min(rows, cols) / 3) ** 2
    pixels = (400 + 200 * rng.random((rows, cols)) + 1500 * disc).astype(np.uint16)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = uid.SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
    ds.SOPClassUID = uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.PatientName = "Test^Phantom"
    ds.set_pixel_data(pixels, "MONOCHROME2", 16)
    ds.WindowCenter = 1200
    ds.WindowWidth = 2400
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def broken_bytes() -> bytes:
    """Text that pretends to be a picture (upload it as ``broken.png``)."""
    return b"This is not a picture, just some text in a file named like one.\n" * 4


def write_random_resnet18(torch_home: str | Path, seed: int = 0) -> Path:
    """Save a seeded random resnet18 state dict as ``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``.

    The app then finds "ImageNet weights" on disk and shows resnet18 by default (the numbers mean nothing).
    """
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    path = Path(torch_home) / "hub" / "checkpoints" / RESNET18_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(resnet18(weights=None).state_dict(), path)
    return path
