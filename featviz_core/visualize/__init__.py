"""Feature visualization: the picture a channel responds to most, by optimization (:mod:`.optimize`) in a
decorrelated Fourier parameterization with robustness transforms (:mod:`.param`)."""

from .optimize import OBJECTIVES, GalleryPreview, Visualization, visualize, visualize_channels

__all__ = ["OBJECTIVES", "GalleryPreview", "Visualization", "visualize", "visualize_channels"]
