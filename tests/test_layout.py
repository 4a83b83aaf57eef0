"""The layering the README's Layout section promises, checked on the source: the product never
imports the emulator (test support and a user tool), and the engine never imports pytest (the
core runs without it; only the plugin package adapts it)."""
import ast

import pytest

from conftest import REPO

PRODUCT = sorted(p for p in (REPO / "rlhf_eval").rglob("*.py") if "emulator" not in p.relative_to(REPO).parts)


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("path", PRODUCT, ids=lambda p: str(p.relative_to(REPO)))
def test_the_product_imports_neither_the_emulator_nor_pytest(path):
    for module in imported_modules(path):
        assert not module.startswith("rlhf_eval.emulator"), f"{path.name} imports {module}"
        assert module.split(".")[0] not in ("pytest", "_pytest"), f"{path.name} imports {module}"
