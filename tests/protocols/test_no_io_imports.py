"""Protocol cores are sans-I/O: no module under threadloom/protocols imports I/O machinery."""

from __future__ import annotations

import ast
from pathlib import Path

import threadloom.protocols

FORBIDDEN = {"socket", "selectors", "ssl", "threading", "asyncio"}
ROOT = Path(threadloom.protocols.__file__).parent


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            roots.update(
                arg.value.split(".")[0]
                for arg in node.args[:1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
            )
    return roots


def test_protocol_modules_import_no_io() -> None:
    modules = sorted(ROOT.rglob("*.py"))
    assert any(path.parent.name == "http1" for path in modules)
    for path in modules:
        bad = imported_roots(ast.parse(path.read_text(), str(path))) & FORBIDDEN
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_checker_sees_imports() -> None:
    source = "import socket\nfrom asyncio import sleep\nimport os.path\n__import__('ssl')\n"
    assert imported_roots(ast.parse(source)) == {"socket", "asyncio", "os", "ssl"}
