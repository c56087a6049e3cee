"""An ONNX graph run by onnxruntime, dressed as a PyTorch module so featviz's hooks work unchanged.

:class:`OnnxRuntimeModule` has one placeholder submodule per node that depends on the image, named as the
PyTorch conversion names them. Its forward pass asks onnxruntime for the graph's outputs and, besides
them, for the outputs of exactly the nodes whose placeholders carry hooks right now (onnxruntime gives
any intermediate tensor once it is a graph output); then it calls those placeholders in graph order with
onnxruntime's values, so each hook sees the exact tensor onnxruntime computed. One session is built per
set of extra outputs, lazily, and a few are kept (least recently used first out). Nothing here is
differentiable: a model built on this module has ``supports_gradients=False``.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnx import ModelProto, ValueInfoProto, helper
from torch import nn

__all__ = ["MAX_SESSIONS", "OnnxRuntimeModule", "OrtRunner", "placeholder_class", "session_options"]

MAX_SESSIONS = 3
"""Sessions kept per model, each for one set of extra outputs (each holds its own copy of the weights)."""


ort.set_default_logger_severity(3)  # errors only: onnxruntime's warnings are not for the people using featviz


def session_options() -> ort.SessionOptions:
    """featviz's onnxruntime settings: errors only in the log, and worker threads that sleep instead of
    spinning between runs (on a small shared machine a spinning pool slows every other thread down)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OrtRunner:
    """Runs one ONNX model with onnxruntime (CPU), giving any node's output on request."""

    def __init__(
        self,
        model: ModelProto,
        value_types: Mapping[str, int] | None = None,
        max_sessions: int = MAX_SESSIONS,
    ) -> None:
        self._model = model
        self._types = dict(value_types or {})
        self._outputs = tuple(o.name for o in model.graph.output)
        self._input = next(
            i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
        )
        self._max = max_sessions
        self._sessions: OrderedDict[tuple[str, ...], ort.InferenceSession] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._outputs

    def session(self, extra: tuple[str, ...] = ()) -> ort.InferenceSession:
        """The session whose outputs are the graph's outputs followed by ``extra`` (built on first use)."""
        with self._lock:
            found = self._sessions.get(extra)
            if found is not None:
                self._sessions.move_to_end(extra)
                return found
            graph = self._model.graph
            count = len(graph.output)
            try:  # the extra outputs are added for the time of one serialisation, not kept in the model
                graph.output.extend(self._value_info(name) for name in extra)
                data = self._model.SerializeToString()
            finally:
                del graph.output[count:]
            session = ort.InferenceSession(data, session_options(), providers=["CPUExecutionProvider"])
            self._sessions[extra] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
            return session

    def forget(self) -> None:
        """Drop every session (they are built again when needed)."""
        with self._lock:
            self._sessions.clear()

    def _value_info(self, name: str) -> ValueInfoProto:
        elem_type = self._types.get(name)
        if elem_type:
            return helper.make_tensor_value_info(name, elem_type, None)
        return ValueInfoProto(name=name)

    def run(self, feed: np.ndarray, extra: Sequence[str] = ()) -> dict[str, Any]:
        """Graph outputs and the ``extra`` values for one input, by name."""
        wanted = tuple(name for name in dict.fromkeys(extra) if name not in self._outputs)
        session = self.session(wanted)
        names = self._outputs + wanted
        values = session.run(list(names), {self._input: feed})
        return dict(zip(names, values, strict=True))


class OnnxNode(nn.Module):
    """Stands for one ONNX node: called with that node's onnxruntime outputs, returns them unchanged."""

    def forward(self, *values: Any) -> Any:
        return values[0] if len(values) == 1 else values


@functools.cache
def placeholder_class(type_name: str) -> type[OnnxNode]:
    """The placeholder class for a node (named like the module the conversion would build: ``Conv2d``...)."""
    return type(type_name, (OnnxNode,), {"__module__": __name__, "__doc__": f"An ONNX {type_name} node."})


def _tensor(value: Any) -> Any:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


class OnnxRuntimeModule(nn.Module):
    """Takes (N, C, H, W) like every featviz model (permuted to (N, H, W, C) for channels-last graphs)."""

    def __init__(
        self,
        runner: OrtRunner,
        nodes: Sequence[tuple[str, str, tuple[str, ...]]],
        *,
        channels_last: bool,
        input_dtype: np.dtype[Any],
    ) -> None:
        super().__init__()
        self._runner = runner
        self._plan = tuple((name, tuple(o for o in outputs if o)) for name, _type, outputs in nodes)
        self._channels_last = channels_last
        self._dtype = input_dtype
        for name, type_name, _outputs in nodes:
            self.add_module(name, placeholder_class(type_name)())

    def forward(self, x: torch.Tensor) -> Any:
        if self._channels_last:
            x = x.permute(0, 2, 3, 1)
        feed = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=self._dtype)
        modules = self._modules
        hooked = [
            (name, outputs)
            for name, outputs in self._plan
            if modules[name]._forward_hooks or modules[name]._forward_pre_hooks  # type: ignore[union-attr]
        ]
        extra = [value for _name, outputs in hooked for value in outputs]
        values = self._runner.run(feed, extra)
        for name, outputs in hooked:
            modules[name](*[_tensor(values[value]) for value in outputs])  # type: ignore[misc]
        results = [_tensor(values[name]) for name in self._runner.output_names]
        return results[0] if len(results) == 1 else tuple(results)
