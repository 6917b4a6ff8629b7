"""The import graph of the project's packages, read from the source: fails on a cycle.

Usage::

  python -m experiments.import_graph [--root DIR] [--packages mnemonic_jax experiments]
      [--max-lines 600] [--quiet]

Prints, for every module of the packages, the project modules it imports; then every import
cycle, and every module longer than ``--max-lines`` lines. Exit status 0 when there is
neither, 1 when there is either (2 for a bad argument).

The graph comes from the source text alone (:mod:`ast`; nothing is imported or run), from
every ``import`` and ``from ... import`` statement: at module level, inside functions and
classes, inside ``try`` blocks alike. Statements under ``if TYPE_CHECKING:`` (or
``typing.TYPE_CHECKING``) are left out: they never run. Imports made by other means
(``importlib.import_module``, ``runpy``) are not statements and are not seen.

How a statement becomes an edge (the convention of import-linter's graph builder, grimp):

* ``import a.b.c`` -> the module ``a.b.c`` (or its longest prefix that is a project module);
* ``from a.b import c`` -> ``a.b.c`` where that is a module, else ``a.b`` (``c`` is a name
  defined in ``a.b``); relative imports are resolved against the importing module;
* importing ``a.b.c`` adds no edge to the packages ``a`` and ``a.b`` whose ``__init__``
  Python runs first: counting those would make each package whose ``__init__`` re-exports
  its modules a cycle with every one of them.

A cycle is a set of modules each reachable from every other (a strongly connected component
of more than one module); for each, one shortest cycle is printed with the file and line of
each import, then every import inside the set, so that it is clear which ones to cut.
Imports made only inside functions are marked ``(in a function)``: they run later, but they
still tie the modules together and count.
"""

import argparse
import ast
import collections
import dataclasses
import pathlib
import sys
from typing import Iterator, Sequence

PACKAGES = ("mnemonic_jax", "experiments")
MAX_LINES = 600


@dataclasses.dataclass(frozen=True)
class Module:
  """One source file of a package.

  Attributes:
    name: dotted module name (``pkg.sub`` for ``pkg/sub/__init__.py``).
    path: the file, relative to the root.
    lines: its number of lines.
    is_package: whether it is a package's ``__init__.py``.
  """

  name: str
  path: pathlib.Path
  lines: int
  is_package: bool


@dataclasses.dataclass(frozen=True)
class Edge:
  """``source`` imports ``target``, first at ``line`` of the source's file.

  ``lazy``: every such import of ``target`` is inside a function body.
  """

  source: str
  target: str
  line: int
  lazy: bool


@dataclasses.dataclass
class Graph:
  """Modules by name, and for each the project modules it imports (target -> edge)."""

  modules: dict[str, Module]
  edges: dict[str, dict[str, Edge]]


@dataclasses.dataclass
class Result:
  """What :func:`check` found: the graph, its cycles, and the modules over the limit."""

  graph: Graph
  cycles: list[list[str]]
  long_modules: list[tuple[str, int]]
  max_lines: int

  @property
  def ok(self) -> bool:
    return not self.cycles and not self.long_modules


# ----------------------------------------------------------------------------------------
# Reading the source.


def discover(root: pathlib.Path, packages: Sequence[str]) -> dict[str, Module]:
  """Every ``.py`` file under ``root/<package>`` for each package, by module name.

  Raises:
    FileNotFoundError: a package is not a directory under ``root``.
  """
  modules = {}
  for package in packages:
    base = root / package
    if not base.is_dir():
      raise FileNotFoundError(f"no package directory {base}")
    for path in sorted(base.rglob("*.py")):
      rel = path.relative_to(root)
      if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
        continue
      parts = list(rel.with_suffix("").parts)
      is_package = parts[-1] == "__init__"
      if is_package:
        parts.pop()
      name = ".".join(parts)
      text = path.read_text(encoding="utf-8")
      modules[name] = Module(name, rel, len(text.splitlines()), is_package)
  return modules


def _is_type_checking(test: ast.expr) -> bool:
  if isinstance(test, ast.Name):
    return test.id == "TYPE_CHECKING"
  return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def import_statements(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
  """Every import statement of ``tree`` that can run, with whether it is in a function.

  The body of ``if TYPE_CHECKING:`` is skipped (its ``else`` is not).
  """
  stack: list[tuple[ast.AST, bool]] = [(tree, False)]
  while stack:
    node, in_function = stack.pop()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node, in_function
      continue
    if isinstance(node, ast.If) and _is_type_checking(node.test):
      children = list(node.orelse)
    else:
      children = list(ast.iter_child_nodes(node))
    inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                              ast.Lambda))
    stack.extend((child, inside) for child in reversed(children))


def _known_prefix(name: str, modules: dict[str, Module]) -> str | None:
  """The longest dotted prefix of ``name`` (itself included) that is a project module."""
  parts = name.split(".")
  for end in range(len(parts), 0, -1):
    prefix = ".".join(parts[:end])
    if prefix in modules:
      return prefix
  return None


def targets(node: ast.Import | ast.ImportFrom, module: Module,
            modules: dict[str, Module]) -> list[str]:
  """The project modules one import statement of ``module`` names (see the module doc)."""
  if isinstance(node, ast.Import):
    found = [_known_prefix(alias.name, modules) for alias in node.names]
    return [t for t in found if t]
  if node.level:
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    parts = package.split(".") if package else []
    if node.level - 1 > len(parts):
      return []  # Beyond the top package: an error at run time, not an edge.
    parts = parts[:len(parts) - (node.level - 1)]
    base = ".".join(parts + ([node.module] if node.module else []))
  else:
    base = node.module or ""
  found = []
  for alias in node.names:
    full = f"{base}.{alias.name}" if base else alias.name
    if alias.name != "*" and full in modules:
      found.append(full)
    else:
      found.append(_known_prefix(base, modules) if base else None)
  return [t for t in found if t]


def build_graph(root: pathlib.Path, packages: Sequence[str] = PACKAGES) -> Graph:
  """The import graph of ``packages`` under ``root``, from their source.

  Raises:
    FileNotFoundError: a package is not a directory under ``root``.
    SyntaxError: a module does not parse.
  """
  root = pathlib.Path(root)
  modules = discover(root, packages)
  edges: dict[str, dict[str, Edge]] = {}
  for module in modules.values():
    tree = ast.parse((root / module.path).read_text(encoding="utf-8"), str(module.path))
    mine: dict[str, Edge] = {}
    for node, lazy in import_statements(tree):
      for target in targets(node, module, modules):
        if target == module.name:
          continue
        old = mine.get(target)
        if old is None:
          mine[target] = Edge(module.name, target, node.lineno, lazy)
        elif old.lazy and not lazy:  # A module-level import is the one that matters.
          mine[target] = Edge(module.name, target, node.lineno, False)
    edges[module.name] = dict(sorted(mine.items()))
  return Graph(modules, edges)


# ----------------------------------------------------------------------------------------
# Cycles and long modules.


def strongly_connected(graph: Graph) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan), each sorted."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  on_stack: set[str] = set()
  stack: list[str] = []
  components = []
  counter = 0
  for start in sorted(graph.modules):
    if start in index:
      continue
    work = [(start, iter(graph.edges[start]))]
    index[start] = low[start] = counter
    counter += 1
    stack.append(start)
    on_stack.add(start)
    while work:
      node, children = work[-1]
      child = next(children, None)
      if child is not None:
        if child not in index:
          index[child] = low[child] = counter
          counter += 1
          stack.append(child)
          on_stack.add(child)
          work.append((child, iter(graph.edges[child])))
        elif child in on_stack:
          low[node] = min(low[node], index[child])
        continue
      work.pop()
      if work:
        parent = work[-1][0]
        low[parent] = min(low[parent], low[node])
      if low[node] == index[node]:
        component = []
        while True:
          member = stack.pop()
          on_stack.discard(member)
          component.append(member)
          if member == node:
            break
        if len(component) > 1:
          components.append(sorted(component))
  return sorted(components)


def shortest_cycle(graph: Graph, component: Sequence[str]) -> list[str]:
  """A shortest cycle through the first module of ``component``, inside it (first = last)."""
  members = set(component)
  start = component[0]
  previous: dict[str, str] = {}
  queue = collections.deque([start])
  while queue:
    node = queue.popleft()
    for child in graph.edges[node]:
      if child not in members:
        continue
      if child == start:
        path = [node]
        while path[-1] != start:
          path.append(previous[path[-1]])
        return list(reversed(path)) + [start]
      if child not in previous:
        previous[child] = node
        queue.append(child)
  raise ValueError(f"{component} is not a cycle")


def check(root: pathlib.Path, packages: Sequence[str] = PACKAGES,
          max_lines: int = MAX_LINES) -> Result:
  """The import graph of ``packages`` under ``root``, its cycles and its long modules.

  Args:
    root: the directory holding the packages (the repository root).
    packages: top-level package directories under ``root``.
    max_lines: the most lines a module may have.

  Returns:
    A :class:`Result`; ``result.ok`` is false on a cycle or a module over ``max_lines``.

  Raises:
    FileNotFoundError: a package is not a directory under ``root``.
    SyntaxError: a module does not parse.
  """
  graph = build_graph(root, packages)
  long = sorted((m.name, m.lines) for m in graph.modules.values() if m.lines > max_lines)
  return Result(graph, strongly_connected(graph), long, max_lines)


# ----------------------------------------------------------------------------------------
# Report.


def _edge_text(graph: Graph, source: str, target: str) -> str:
  edge = graph.edges[source][target]
  where = f"{graph.modules[source].path.as_posix()}:{edge.line}"
  return f"{source} -> {target}  ({where}{', in a function' if edge.lazy else ''})"


def report(result: Result, show_graph: bool = True) -> str:
  """The text :func:`main` prints: the graph, then the cycles and long modules, if any."""
  graph = result.graph
  lines = []
  if show_graph:
    lines.append(f"Import graph: {len(graph.modules)} modules, "
                 f"{sum(map(len, graph.edges.values()))} imports between them.")
    for name in sorted(graph.modules):
      targets_ = [t + (" (in a function)" if e.lazy else "")
                  for t, e in graph.edges[name].items()]
      lines.append(f"{name} -> {', '.join(targets_) if targets_ else '(nothing)'}")
    lines.append("")
  for component in result.cycles:
    cycle = shortest_cycle(graph, component)
    lines.append(f"CYCLE among {len(component)} modules: {', '.join(component)}")
    lines.append("  shortest: " + " -> ".join(cycle))
    lines += ["    " + _edge_text(graph, a, b) for a, b in zip(cycle, cycle[1:])]
    lines.append("  every import inside it:")
    members = set(component)
    lines += ["    " + _edge_text(graph, a, b) for a in component
              for b in graph.edges[a] if b in members]
  for name, count in result.long_modules:
    lines.append(f"TOO LONG: {graph.modules[name].path.as_posix()} has {count} lines "
                 f"(at most {result.max_lines})")
  if result.ok:
    lines.append(f"OK: no import cycle; no module over {result.max_lines} lines.")
  else:
    lines.append(f"FAILED: {len(result.cycles)} import cycle(s), "
                 f"{len(result.long_modules)} module(s) over {result.max_lines} lines.")
  return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
  """Prints the report of :func:`check`; returns the exit status (0 ok, 1 failed, 2 usage)."""
  p = argparse.ArgumentParser(prog="python -m experiments.import_graph",
                              description=__doc__.split("\n")[0])
  p.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parents[1]),
                 help="directory holding the packages (default: this repository)")
  p.add_argument("--packages", nargs="+", default=list(PACKAGES),
                 help=f"top-level packages to read (default: {' '.join(PACKAGES)})")
  p.add_argument("--max-lines", type=int, default=MAX_LINES,
                 help=f"the most lines a module may have (default: {MAX_LINES})")
  p.add_argument("--quiet", action="store_true",
                 help="print only the cycles, the long modules and the verdict")
  args = p.parse_args(argv)
  try:
    result = check(pathlib.Path(args.root), args.packages, args.max_lines)
  except FileNotFoundError as e:
    print(f"experiments.import_graph: error: {e}", file=sys.stderr)
    return 2
  print(report(result, show_graph=not args.quiet))
  return 0 if result.ok else 1


if __name__ == "__main__":
  sys.exit(main())
