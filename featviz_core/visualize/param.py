"""The picture that feature visualization optimizes, and what is done to it before the model sees it.

The recipe of Olah et al., "Feature Visualization" (Distill 2017), as lucid and lucent implement it:

* :class:`FourierImage`: the picture's 2-D Fourier spectrum is what is optimized, each frequency scaled by
  ``1 / frequency``, so that the optimizer moves low frequencies as easily as high ones and the result is
  not high-frequency noise;
* for colour pictures the three channels live in a *decorrelated* colour space: the fixed 3×3 square root
  of ImageNet's colour correlation matrix maps them to RGB; a sigmoid then puts every pixel in [0, 1];
* :func:`robustness_grid` + :func:`apply_grid`: each step the picture is padded by 12 px (grey), shifted by
  up to 8 px, scaled by 0.9–1.1, rotated by −10…10° and shifted again by up to 4 px, so that only patterns
  that survive small moves can excite the channel. The five transformations are affine, so they are done as
  one resampling (bilinear, grey outside the picture): with no rotation and no scaling it copies pixels
  exactly as padding and cropping would. Of the moved frame (lucid's 140 px for a 128 px picture) the model
  sees the centre at the picture's own size and scale, 128 px: a resnet18 step is then about 1.25× faster
  than at 140 px, and the pictures excite their channels as much (0.96–1.01× on six channels of the demo
  model, in ``bench/visualize.py``'s view-quality table); the picture still moves by −4…+6 px against the window;
* :func:`input_map`: the model's own normalisation (e.g. torchvision's ``Normalize(mean, std)``) read from
  its preprocessing, so the optimized picture is fed exactly as a photo would be.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import FeatvizError
from ..models.loaded import LoadedModel

__all__ = [
    "COLOR_CORRELATION_SQRT",
    "PAD",
    "FourierImage",
    "InputMap",
    "Robustness",
    "apply_grid",
    "input_map",
    "robustness_grid",
    "to_uint8",
]

COLOR_CORRELATION_SQRT = np.array(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=np.float32
)
"""The square root of ImageNet's RGB colour correlation matrix (lucid's ``color_correlation_svd_sqrt``)."""
_COLOR = COLOR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))

PAD = 12
"""Grey border added before the random moves, in pixels."""


def _frequencies(height: int, width: int) -> np.ndarray:
    """The spatial frequency of each coefficient of ``torch.fft.rfft2`` of an (height, width) picture."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.sqrt(fx * fx + fy * fy)


class FourierImage:
    """``batch`` pictures of ``channels`` × ``size`` × ``size`` parameterized by their Fourier spectrum.

    ``spectrum`` (a leaf tensor that requires grad) is what the optimizer changes; calling the object gives
    the pictures in [0, 1], shape (batch, channels, size, size). Initialised with small random values drawn
    from ``generator`` (standard deviation 0.01, as lucid), so a seed gives the same start every time.
    """

    def __init__(
        self,
        batch: int,
        channels: int,
        size: int,
        generator: torch.Generator,
        device: torch.device,
        sd: float = 0.01,
    ) -> None:
        self.batch, self.channels, self.size = batch, channels, size
        freqs = _frequencies(size, size)
        scale = 1.0 / np.maximum(freqs, 1.0 / size)  # 1 / frequency; the constant term as the lowest one
        self._scale = torch.tensor(scale, dtype=torch.float32, device=device)[None, None, :, :, None]
        start = torch.randn((batch, channels, *freqs.shape, 2), generator=generator, dtype=torch.float32) * sd
        self.spectrum = start.to(device).requires_grad_(True)
        self._color = torch.tensor(_COLOR.T, device=device) if channels == 3 else None

    def raw(self) -> torch.Tensor:
        """The pictures before the colour map and the sigmoid (unbounded values)."""
        spectrum = torch.view_as_complex(self._scale * self.spectrum)
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho")
        return image / 4.0  # lucid's "magic" constant: keeps the sigmoid out of saturation at the start

    def __call__(self) -> torch.Tensor:
        image = self.raw()
        if self._color is not None:  # decorrelated colour space -> RGB
            image = torch.einsum("nchw,cd->ndhw", image, self._color)
        return torch.sigmoid(image)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Pictures in [0, 1], (N, C, H, W) -> uint8 (N, H, W, 3) for colour, (N, H, W) for grey (read-only)."""
    array = (images.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    out = array[:, 0].numpy() if array.shape[1] == 1 else array.permute(0, 2, 3, 1).numpy()
    out = np.ascontiguousarray(out)
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------------------------------------------
# Transformation robustness


@dataclass(frozen=True)
class Robustness:
    """One step's random moves: shifts in whole pixels, scale, rotation in degrees."""

    shift1: tuple[int, int]
    scale: float
    angle: float
    shift2: tuple[int, int]
    pad: int = PAD
    jitter1: int = 8
    jitter2: int = 4

    @staticmethod
    def draw(generator: torch.Generator, *, pad: int = PAD, jitter1: int = 8, jitter2: int = 4,
             scale: tuple[float, float] = (0.9, 1.1), angle: float = 10.0) -> Robustness:
        """Random moves from ``generator`` (always six draws, in a fixed order, so a seed repeats)."""
        u = torch.rand(6, generator=generator, dtype=torch.float64).tolist()
        return Robustness(
            shift1=(min(int(u[0] * jitter1), jitter1 - 1), min(int(u[1] * jitter1), jitter1 - 1)),
            scale=scale[0] + (scale[1] - scale[0]) * u[2],
            angle=-angle + 2 * angle * u[3],
            shift2=(min(int(u[4] * jitter2), jitter2 - 1), min(int(u[5] * jitter2), jitter2 - 1)),
            pad=pad, jitter1=jitter1, jitter2=jitter2,
        )

    def output_size(self, size: int) -> int:
        """Side of the transformed picture: padded, then cropped by each jitter (lucid's sizes)."""
        return size + 2 * self.pad - self.jitter1 - self.jitter2


def robustness_grid(moves: Robustness, size: int, device: torch.device, view: int | None = None) -> torch.Tensor:
    """The sampling grid (1, V, V, 2) for ``F.grid_sample`` that does, in one resampling, what lucid does
    step by step on a ``size`` picture: pad, crop at ``shift1`` (jitter), scale and rotate about the centre,
    crop at ``shift2`` (jitter). Coordinates are in the picture's pixels (centre of pixel i at i + 0.5),
    normalised for ``align_corners=False``.

    ``view`` is the side of the window, in pixels, that is kept: by default lucid's whole frame
    (:meth:`Robustness.output_size`, 140 px for a 128 px picture); a smaller one keeps the frame's centre at
    the same scale (``view=size``: the model sees as many pixels as the picture has).
    """
    padded = size + 2 * moves.pad
    after1 = padded - moves.jitter1  # the frame that is scaled and rotated (kept at its size)
    out = after1 - moves.jitter2
    view = out if view is None else view
    centre = after1 / 2.0
    theta = math.radians(moves.angle)
    cos, sin = math.cos(theta) / moves.scale, math.sin(theta) / moves.scale
    axis = torch.arange(view, dtype=torch.float32, device=device) + 0.5 + (out - view) / 2.0
    ys, xs = torch.meshgrid(axis + moves.shift2[0] - centre, axis + moves.shift2[1] - centre, indexing="ij")
    # inverse map: output position -> position in the rotated-and-scaled frame -> in the padded picture
    src_x = centre + cos * xs + sin * ys + moves.shift1[1] - moves.pad
    src_y = centre - sin * xs + cos * ys + moves.shift1[0] - moves.pad
    grid = torch.stack((2.0 * src_x / size - 1.0, 2.0 * src_y / size - 1.0), dim=-1)
    return grid[None]


def apply_grid(images: torch.Tensor, grid: torch.Tensor, fill: float = 0.5) -> torch.Tensor:
    """Resample ``images`` (N, C, H, W) on ``grid``; places outside the picture get ``fill`` (grey).

    Each channel is resampled as an image of its own (the same values): PyTorch spreads ``grid_sample``
    over the batch, so a single colour picture then uses more than one core (fastest on 2 cores)."""
    n, c, height, width = images.shape
    flat = (images - fill).reshape(n * c, 1, height, width)
    grids = grid.expand(n, -1, -1, -1).repeat_interleave(c, dim=0)
    out = F.grid_sample(flat, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(n, c, *out.shape[-2:]) + fill


# ---------------------------------------------------------------------------------------------------
# The model's own normalisation


@dataclass(frozen=True)
class InputMap:
    """The model's preprocessing after its geometric part, as an affine map on pixel values in [0, 1]:
    ``model input = matrix @ pixel + offset`` at every position (for torchvision's ``Normalize(mean, std)``
    ``matrix`` is ``diag(1 / std)`` and ``offset`` is ``-mean / std``). ``channels`` is the number of
    picture channels (1 grey, 3 RGB); ``matrix`` is (model input channels, channels)."""

    matrix: np.ndarray
    offset: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def is_diagonal(self) -> bool:
        """True when each input channel comes from one picture channel (torchvision's Normalize)."""
        square = self.matrix.shape[0] == self.matrix.shape[1]
        return bool(square and np.count_nonzero(self.matrix - np.diag(np.diag(self.matrix))) == 0)

    def on(self, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
        """The map as a function of pictures (N, channels, H, W) on ``device``, its constants moved there once."""
        offset = torch.as_tensor(self.offset, device=device)[None, :, None, None]
        if self.is_diagonal:
            scale = torch.as_tensor(np.diag(self.matrix).copy(), device=device)[None, :, None, None]
            return lambda pixels: pixels * scale + offset
        matrix = torch.as_tensor(self.matrix, device=device)
        return lambda pixels: torch.einsum("nchw,dc->ndhw", pixels, matrix) + offset

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.on(pixels.device)(pixels)


def _centre_value(model: LoadedModel, value: tuple[int, ...]) -> np.ndarray:
    mode = "L" if len(value) == 1 else "RGB"
    height, width = model.input_size
    picture = Image.new(mode, (max(width, 1), max(height, 1)), value[0] if mode == "L" else value)
    tensor = model.preprocess(picture)
    if tensor.ndim != 4:
        raise FeatvizError(f"{model.name}'s preprocessing does not give a picture tensor, so it cannot be used here.")
    _, _, h, w = tensor.shape
    return tensor[0, :, h // 2, w // 2].detach().to(torch.float64).cpu().numpy()


def input_map(model: LoadedModel) -> InputMap:
    """Read the model's normalisation from its preprocessing, for any model source.

    The preprocessing (resize, crop, to tensor, normalise) is applied to plain pictures: black, and one
    channel at full strength at a time. A resize or a crop leaves a plain picture plain, so what comes out
    at the centre is the per-pixel map. A third colour checks that the map is affine; if it is not (a
    preprocessing that is not resize/crop/scale/normalise), :class:`FeatvizError` says so.
    """
    channels = 1 if model.input_channels == 1 else 3
    black = _centre_value(model, (0,) * channels)
    columns = []
    for k in range(channels):
        value = tuple(255 if i == k else 0 for i in range(channels))
        columns.append(_centre_value(model, value) - black)
    matrix = np.stack(columns, axis=1)
    probe = (51, 153, 230)[:channels] if channels == 3 else (140,)
    predicted = matrix @ (np.array(probe, dtype=np.float64) / 255.0) + black
    actual = _centre_value(model, probe)
    if predicted.shape != actual.shape or not np.allclose(predicted, actual, rtol=1e-3, atol=1e-3):
        raise FeatvizError(
            f"{model.name}'s preprocessing is not a plain rescaling of pixel values (it changes colours in a "
            "way featviz cannot undo), so pictures cannot be optimized for it."
        )
    return InputMap(matrix=matrix.astype(np.float32), offset=black.astype(np.float32))
