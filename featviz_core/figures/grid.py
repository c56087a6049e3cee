"""A mosaic's geometry: where each tile of a grid of equal tiles sits, which tile a pixel is in, and the tiles
stacked into one array (for :func:`~featviz_core.figures.mosaic.mosaic_figure` and the filter mosaics)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MosaicLayout", "mosaic_layout", "tile_stack"]


@dataclass(frozen=True)
class MosaicLayout:
    """Where each tile of a mosaic sits, in mosaic pixels (row 0 on top, column 0 on the left).

    Tile ``i`` is in grid row ``i // columns`` and grid column ``i % columns``; tiles are ``tile_h`` ×
    ``tile_w`` pixels with ``gap`` empty pixels between neighbours (none around the outside).
    """

    n_tiles: int
    tile_h: int
    tile_w: int
    rows: int
    columns: int
    gap: int

    @property
    def height(self) -> int:
        """Total mosaic height in pixels."""
        return self.rows * self.tile_h + max(self.rows - 1, 0) * self.gap

    @property
    def width(self) -> int:
        """Total mosaic width in pixels."""
        return self.columns * self.tile_w + max(self.columns - 1, 0) * self.gap

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic."""
        return self.height, self.width

    def origin(self, index: int) -> tuple[int, int]:
        """(row, column) of the top-left pixel of tile ``index``."""
        if not 0 <= index < self.n_tiles:
            raise IndexError(f"tile {index} is outside this mosaic of {self.n_tiles} tiles")
        r, c = divmod(index, self.columns)
        return r * (self.tile_h + self.gap), c * (self.tile_w + self.gap)

    def origins(self) -> np.ndarray:
        """(n_tiles, 2) int array of every tile's top-left (row, column)."""
        i = np.arange(self.n_tiles)
        return np.stack(
            [(i // self.columns) * (self.tile_h + self.gap), (i % self.columns) * (self.tile_w + self.gap)],
            axis=1,
        )

    def center(self, index: int) -> tuple[float, float]:
        """(row, column) of the centre of tile ``index`` (a half-integer for even tile sizes)."""
        top, left = self.origin(index)
        return top + (self.tile_h - 1) / 2, left + (self.tile_w - 1) / 2

    def tile_at(self, row_px: float, col_px: float) -> int | None:
        """Index of the tile under mosaic pixel (row, column); None in a gap or outside the mosaic."""
        if not (math.isfinite(row_px) and math.isfinite(col_px)):
            return None
        row, col = math.floor(row_px), math.floor(col_px)
        if not (0 <= row < self.height and 0 <= col < self.width):
            return None
        r, dr = divmod(row, self.tile_h + self.gap)
        c, dc = divmod(col, self.tile_w + self.gap)
        if dr >= self.tile_h or dc >= self.tile_w:
            return None
        index = r * self.columns + c
        return index if index < self.n_tiles else None


def mosaic_layout(
    n_tiles: int, tile_h: int, tile_w: int, columns: int | None = None, gap: int = 1
) -> MosaicLayout:
    """A near-square grid for ``n_tiles`` tiles of ``tile_h`` × ``tile_w`` pixels.

    Without ``columns``, the grid is chosen so the whole mosaic is roughly as wide as it is tall
    (8 × 8 for 64 square tiles), then balanced so the last row is as full as possible. Explicit
    ``columns`` are kept (at most ``n_tiles``).
    """
    if n_tiles < 0 or tile_h < 1 or tile_w < 1 or gap < 0:
        raise ValueError("mosaic_layout needs n_tiles >= 0, tiles of at least 1×1 pixel and gap >= 0")
    if n_tiles == 0:
        return MosaicLayout(0, tile_h, tile_w, 0, 0, gap)
    if columns is None:
        columns = math.ceil(math.sqrt(n_tiles * (tile_h + gap) / (tile_w + gap)))
        columns = max(1, min(columns, n_tiles))
        columns = math.ceil(n_tiles / math.ceil(n_tiles / columns))  # same rows, fewest columns
    columns = max(1, min(int(columns), n_tiles))
    rows = math.ceil(n_tiles / columns)
    return MosaicLayout(n_tiles, tile_h, tile_w, rows, columns, gap)


def tile_stack(stack: np.ndarray, layout: MosaicLayout, fill: Any) -> np.ndarray:
    """Arrange ``stack`` (n, h, w, *extra) as the mosaic (height, width, *extra), gaps set to ``fill``."""
    n, h, w = stack.shape[:3]
    extra = stack.shape[3:]
    g = layout.gap
    cells = layout.rows * layout.columns
    padded = np.full((cells, h + g, w + g, *extra), fill, dtype=stack.dtype)
    padded[:n, :h, :w] = stack
    grid = padded.reshape(layout.rows, layout.columns, h + g, w + g, *extra)
    grid = grid.swapaxes(1, 2).reshape(layout.rows * (h + g), layout.columns * (w + g), *extra)
    return np.ascontiguousarray(grid[: layout.height, : layout.width])
