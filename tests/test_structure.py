"""The code's shape, read from the sources: imports go one way, only chat/ui/ builds UI, small functions, and a
docstring that says what each module owns."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
CHAT = ROOT / 'chat'
MODULES = sorted(CHAT.rglob('*.py'))  # the app's package, its migrations included
APP_FILES = [ROOT / 'main.py', *MODULES]
EVERY_FILE = sorted(path for folder in ('chat', 'bench', 'tests', 'scripts') for path in (ROOT / folder).rglob('*.py'))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def with_parents(name: str) -> set[str]:
    """Importing chat.ui.avatars runs chat/__init__.py and chat/ui/__init__.py first: those are imports too."""
    parts = name.split('.')
    return {'.'.join(parts[:end]) for end in range(1, len(parts) + 1)}


def imported_modules(path: Path) -> set[str]:
    """Every chat module this file imports, wherever the import stands (TYPE_CHECKING blocks and functions too),
    with the packages that importing it runs. Its own packages are left out: they are being imported already."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
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
    imported = {parent for found_name in found if found_name in known for parent in with_parents(found_name)}
    return imported - with_parents(name)


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


def uses_nicegui_ui(tree: ast.AST) -> bool:
    """`from nicegui import ui`, `import nicegui.ui`, `from nicegui.ui import label`, or `nicegui.ui` reached as an
    attribute of `import nicegui`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == 'nicegui' and 'ui' in {alias.name for alias in node.names}:
                return True
            if node.module == 'nicegui.ui' or node.module.startswith('nicegui.ui.'):
                return True
        if isinstance(node, ast.Import) and any(alias.name.startswith('nicegui.ui') for alias in node.names):
            return True
        if isinstance(node, ast.Attribute) and node.attr == 'ui' and getattr(node.value, 'id', '') == 'nicegui':
            return True
    return False


def test_only_chat_ui_builds_ui() -> None:
    builders = [module_name(path) for path in APP_FILES if uses_nicegui_ui(ast.parse(path.read_text()))]
    assert builders and all(name.startswith('chat.ui') for name in builders), builders


def test_the_ui_check_sees_every_way_of_importing_it() -> None:
    for source in ('from nicegui import app, ui', 'import nicegui.ui', 'from nicegui.ui import label',
                   'import nicegui\nnicegui.ui.label()'):
        assert uses_nicegui_ui(ast.parse(source)), source
    assert not uses_nicegui_ui(ast.parse('from nicegui import Event, app'))


def test_every_chat_module_says_what_it_owns() -> None:
    for path in APP_FILES:
        assert ast.get_docstring(ast.parse(path.read_text())), f'{path.relative_to(ROOT)} has no docstring'


def test_functions_are_under_50_lines_everywhere() -> None:
    """The app, the tests, the benchmark and the scripts alike."""
    too_long = []
    for path in [ROOT / 'main.py', *EVERY_FILE]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length >= 50:
                    too_long.append(f'{path.relative_to(ROOT)}:{node.lineno} {node.name} has {length} lines')
    assert not too_long, too_long
