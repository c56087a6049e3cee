"""Model sources: each turns something a user has (a file, a name) into a :class:`~featviz_core.LoadedModel`."""

from .onnx import NORMALIZATIONS, OnnxInfo, inspect_onnx, load_onnx

__all__ = ["NORMALIZATIONS", "OnnxInfo", "inspect_onnx", "load_onnx"]
