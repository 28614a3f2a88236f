"""The code's shape, read from the sources: imports go one way, only chat/ui/ builds UI, small functions, and a
docstring that says what each module owns."""

from __future__ import annotations

import ast
from pathlib import Path

CHAT = Path(__file__).parent.parent / 'chat'
MODULES = sorted(path for path in CHAT.rglob('*.py') if 'migrations' not in path.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(CHAT.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path: Path) -> set[str]:
    """Every chat module this file imports, wherever the import stands (TYPE_CHECKING blocks and functions too)."""
    package = module_name(path) if path.name == '__init__.py' else module_name(path).rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join([*anchor, *([base] if base else [])])
            # `from . import x` and `from .pkg import module` may name modules: count those that are
            found |= {base} | {f'{base}.{alias.name}' for alias in node.names}
    known = {module_name(module) for module in MODULES}
    return {name for name in found if name in known and name != module_name(path)}


def test_no_import_cycle_anywhere_in_chat() -> None:
    graph = {module_name(path): imported_modules(path) for path in MODULES}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            raise AssertionError('import cycle: ' + ' -> '.join([*trail[trail.index(module):], module]))
        if module in done:
            return
        for imported in graph[module]:
            visit(imported, [*trail, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def test_only_chat_ui_builds_ui() -> None:
    builders = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == 'nicegui' and 'ui' in {a.name for a in node.names}:
                builders.append(module_name(path))
            if isinstance(node, ast.Import) and 'nicegui.ui' in {alias.name for alias in node.names}:
                builders.append(module_name(path))
    assert builders and all(name.startswith('chat.ui') for name in builders), builders


def test_functions_are_under_50_lines_and_modules_say_what_they_own() -> None:
    for path in MODULES:
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f'{path.relative_to(CHAT.parent)} has no docstring'
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                assert length < 50, f'{path.relative_to(CHAT.parent)}:{node.lineno} {node.name} has {length} lines'
