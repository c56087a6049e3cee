"""The shipped .streamlit/config.toml: the settings the app relies on are the ones Streamlit reads."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from featviz.server import shipped_settings

ROOT = Path(__file__).resolve().parent.parent


def test_magic_is_off_and_no_page_needs_it() -> None:
    assert shipped_settings(ROOT)["runner.magicEnabled"] is False
    for path in [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bare = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Expr)
                and not isinstance(node.value, ast.Call | ast.Await | ast.Constant)]
        assert bare == [], f"{path.name}: bare expressions at lines {bare} would need Streamlit's magic"


def test_the_page_bytecode_of_streamlit_skips_ast_parse_without_magic(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With magic off, Streamlit compiles a page straight from its source, safe in parallel sessions."""
    from streamlit import config
    from streamlit.runtime.scriptrunner import magic
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    assert config.get_option("runner.magicEnabled") is False  # Streamlit read the project's config.toml
    parsed: list[str] = []
    monkeypatch.setattr(magic, "add_magic", lambda code, path: parsed.append(path) or code)
    cache = ScriptCache()
    errors: list[BaseException] = []

    def compile_page(page: Path) -> None:
        try:
            cache.get_bytecode(str(page))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=compile_page, args=(p,)) for p in sorted((ROOT / "pages").glob("*.py"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and parsed == []
