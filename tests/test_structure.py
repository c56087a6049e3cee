"""featviz_core's shape: every public name importable, a package per concern, one owner of forward hooks, no
import cycles, no private names imported across modules, every error class in errors.py, files that fit one sitting.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import featviz_core

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "featviz_core"

# featviz_core's public names (they must keep working: `from featviz_core import X`)
PUBLIC = """ActivationRecorder CAM_METHODS CamError CamResult CamTarget Exemplars Extraction FeatvizError ImageLoadError
LayerError LayerInfo LoadedModel ModelLoadError NORMALIZATIONS OBJECTIVES OnnxInfo OutputInfo Preprocessing
SUPPORTED_EXTENSIONS Sample SanityResult Visualization VisualizeError architecture_info cam classification_models
default_cam_layer default_layer describe_outputs download_timm_weights download_weights extract find_exemplars
gradcam image_digest inspect_onnx is_classifier layer_info list_layers list_samples load_checkpoint load_demo
load_from_code load_image load_onnx load_spec load_timm load_torchvision parse_class_names sample_bytes sanity_check
spatial_layers timm_weights_cached visualize weights_are_cached""".split()

# documented module paths and what they must hold
DOCUMENTED = {
    "featviz_core.cam": ["CamMethod", "CAM_METHODS", "cam", "gradcam", "default_cam_layer", "sanity_check"],
    "featviz_core.layers": ["ActivationRecorder", "Tap", "StopForward", "list_layers", "extract", "as_chw"],
    "featviz_core.layers.hooks": ["ActivationRecorder", "Tap", "trace_forward", "hook_count"],
    "featviz_core.images": ["load_image", "image_digest", "list_samples", "open_collection"],
    "featviz_core.models": ["LoadedModel", "Preprocessing", "NORMALIZATIONS", "parse_class_names"],
    "featviz_core.models.sources": ["load_spec", "load_torchvision", "load_timm", "load_checkpoint", "load_onnx"],
    "featviz_core.exemplars": ["Exemplars", "find_exemplars"],
    "featviz_core.visualize": ["visualize", "OBJECTIVES"],
    "featviz_core.figures": ["mosaic_figure", "overlay_figure", "plain_numbers", "COLORSCALES"],
    "featviz_core.report": ["report_html"],
    "featviz_core.demo": ["load_demo"],
    "featviz_core.errors": ["FeatvizError", "StopForward", "CamError", "VisualizeError", "ExemplarsError"],
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in CORE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_importable_from_the_package(name: str) -> None:
    assert hasattr(featviz_core, name), f"featviz_core.{name} is gone"
    assert name in featviz_core.__all__


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_module_paths_hold_their_names(module: str) -> None:
    imported = importlib.import_module(module)
    missing = [n for n in DOCUMENTED[module] if not hasattr(imported, n)]
    assert not missing, f"{module} lacks {missing}"


def test_cam_is_the_package_and_the_function() -> None:
    import featviz_core.cam as package

    assert featviz_core.cam is package and callable(featviz_core.cam)
    assert featviz_core.cam.CamMethod.__name__ == "CamMethod"


def test_a_package_per_concern_and_few_top_level_modules() -> None:
    top = sorted(p.stem for p in CORE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= 12, top
    for package in ("images", "models", "layers", "cam", "visualize", "exemplars", "figures", "report", "demo"):
        init = CORE / package / "__init__.py"
        assert init.is_file(), package
        assert "__all__" in init.read_text() or package == "demo", f"{package}/__init__.py lists no public API"


def test_forward_hooks_are_registered_in_one_module() -> None:
    pattern = re.compile(r"register_forward(_pre)?_hook|register_full_backward_hook|register_hook\(")
    owners = sorted(name for name, path in _modules().items() if pattern.search(path.read_text()))
    assert owners == ["featviz_core.layers.hooks"], owners


def test_no_private_names_imported_across_modules_and_errors_live_in_errors_py() -> None:
    private, errors = [], []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("featviz_core")):
                private += [f"{name} <- {node.module}.{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
            if isinstance(node, ast.ClassDef) and re.search(r"(Error|Exception)$", node.name):
                errors += [] if name == "featviz_core.errors" else [f"{name}.{node.name}"]
    assert not private, private
    assert not errors, errors


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    packages = {n for n, p in modules.items() if p.name == "__init__.py"}
    return {m for m in found if m in modules and m != name and m not in packages}


def test_no_import_cycles_inside_featviz_core() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])


@pytest.mark.parametrize("folder", ["featviz_core", "ui", "pages"])
def test_no_file_is_too_long_to_read_in_one_sitting(folder: str) -> None:
    long = [f"{p.relative_to(ROOT)} ({n})" for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450]
    assert not long, long


def test_python_dash_m_featviz_core_exemplars_still_answers() -> None:
    done = subprocess.run([sys.executable, "-m", "featviz_core.exemplars", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "python -m featviz_core.exemplars" in done.stdout
