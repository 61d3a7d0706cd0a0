"""The shape of the package, checked from its source: no import circle
(imports inside functions count), no module that rewrites another
module's globals, no module much over 500 lines, no build artefact in git.

These read the code as text (``ast``), never import it, so a circle that
only a late import hides is still a circle here.
"""
import ast
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PACKAGE = ROOT / 'resize_flows'
MAX_LINES = 520


def _modules():
    """{dotted name: path} of every module of the package (the alembic
    revisions aside: they are data for alembic, never imported by us)."""
    found = {}
    for path in PACKAGE.rglob('*.py'):
        rel = path.relative_to(ROOT).with_suffix('')
        parts = list(rel.parts)
        if 'versions' in parts:
            continue
        if parts[-1] == '__init__':
            parts.pop()
        found['.'.join(parts)] = path
    return found


MODULES = _modules()


def _ancestors(name):
    parts = name.split('.')
    return {'.'.join(parts[:i]) for i in range(1, len(parts))}


def _targets(importer, node):
    """The package's modules that ``node`` (an import) runs, seen from
    ``importer``: the named module and the packages above it, except the
    importer's own packages (Python runs those before the importer)."""
    names = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ''
        if node.level:
            pkg = importer.split('.')
            if not MODULES[importer].name == '__init__.py':
                pkg = pkg[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = '.'.join(pkg + ([base] if base else []))
        for alias in node.names:
            sub = '%s.%s' % (base, alias.name)
            names.append(sub if sub in MODULES else base)
    targets = set()
    for name in names:
        if not name.startswith('resize_flows'):
            continue
        while name and name not in MODULES:
            name = name.rpartition('.')[0]
        for target in {name} | _ancestors(name):
            if target in MODULES and target != importer and \
                    target not in _ancestors(importer):
                targets.add(target)
    return targets


def _graph():
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[name] |= _targets(name, node)
    return graph


def _cycle(graph):
    """One import circle as a list of module names, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack = []

    def visit(node):
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_finds_a_circle():
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c',
                                                            'a']
    assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_the_checker_sees_late_imports():
    graph = _graph()
    # engine imports the flow log at the top; the CLI's shell imports
    # its commands only through entry points, never by name.
    assert 'resize_flows.persistence.flowlog' in graph['resize_flows.engine']
    assert any(graph.values())


def test_no_import_circle():
    cycle = _cycle(_graph())
    assert cycle is None, 'import circle: %s' % ' -> '.join(cycle)


def _module_aliases(tree):
    """Names bound to modules of the package in ``tree``."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith('resize_flows') and alias.asname:
                    aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith('resize_flows'):
            for alias in node.names:
                if '%s.%s' % (node.module, alias.name) in MODULES:
                    aliases.add(alias.asname or alias.name)
    return aliases


def _rewrites(path):
    """(line, text) of each statement in ``path`` that assigns to
    another module's attribute or to ``globals()``."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = _module_aliases(tree)
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = getattr(node, 'targets', None) or [node.target]
        for target in targets:
            if isinstance(target, ast.Attribute) and \
                    isinstance(target.value, ast.Name) and \
                    target.value.id in aliases:
                found.append((node.lineno, ast.unparse(target)))
            if isinstance(target, ast.Subscript) and \
                    isinstance(target.value, ast.Call) and \
                    ast.unparse(target.value.func) == 'globals':
                found.append((node.lineno, ast.unparse(target)))
        if isinstance(node, ast.Call) and \
                ast.unparse(node.func) == 'setattr' and node.args and \
                isinstance(node.args[0], ast.Name) and \
                node.args[0].id in aliases:
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_the_rewrite_checker_finds_one(tmp_path):
    sample = tmp_path / 'sample.py'
    sample.write_text('from resize_flows import engine\n'
                      'engine.OWNER = "me"\n'
                      'globals()["x"] = 1\n')
    assert [line for line, _ in _rewrites(sample)] == [2, 3]


def test_no_module_rewrites_another_modules_globals():
    found = {str(path.relative_to(ROOT)): _rewrites(path)
             for path in MODULES.values()}
    assert {k: v for k, v in found.items() if v} == {}


def test_no_module_much_over_500_lines():
    long = {}
    for path in MODULES.values():
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            long[str(path.relative_to(ROOT))] = lines
    assert long == {}


@pytest.mark.skipif(not (ROOT / '.git').exists(),
                    reason='not a git checkout')
def test_no_build_artefact_in_git():
    files = subprocess.run(['git', 'ls-files'], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    artefacts = [f for f in files
                 if f.endswith(('.whl', '.pyc', '.egg', '.tar.gz', '.so'))
                 or '.egg-info/' in f or f.startswith(('build/', 'dist/'))]
    assert artefacts == []


def _layout_paths():
    """The module paths that the README's layout section names."""
    text = (ROOT / 'README.rst').read_text()
    start = text.index('\nLayout\n======\n')
    end = text.index('\n=====', start + len('Layout') + 10)
    named = set()
    for word in text[start:end].split():
        word = word.strip('.,:;()`')
        if word.endswith('.py') and not word.startswith('tests/'):
            named.add(word)
    return named


def test_the_readme_layout_names_every_module():
    """The README's layout section names each module of the package
    that holds code, by its path, and no module that is gone."""
    expected = set()
    for path in MODULES.values():
        rel = path.relative_to(PACKAGE)
        if 'versions' in rel.parts or path.stat().st_size == 0:
            continue
        expected.add(str(rel))
    named = _layout_paths()
    assert sorted(expected - named) == [], 'modules missing in the layout'
    assert sorted(named - expected) == [], \
        'the layout names modules that do not exist'
