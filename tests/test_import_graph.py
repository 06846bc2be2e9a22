"""The import graph of resnet_jax/ has no circle, function-level imports counted, and its arrows point
one way: report -> analysis -> (train, models, data), report -> studies -> (train, config); importing it
starts no JAX backend (the command line splits the CPU into devices before one starts)."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "resnet_jax"


def module_files(package: pathlib.Path = PACKAGE) -> dict[str, pathlib.Path]:
  """Dotted module name -> file, for every .py file under `package`."""
  modules = {}
  for path in sorted(package.rglob("*.py")):
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    modules[".".join(parts)] = path
  return modules


def imported_modules(name: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> set[str]:
  """The package's modules that `name` imports anywhere in its file (inside functions too), relative
  imports resolved; `from a import b` counts a.b when b is a submodule, else a."""
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
      targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    else:
      continue
    for target in targets:
      while target and target not in modules:  # `import a.b.c` of a name inside a module: its module
        target = target.rpartition(".")[0]
      if target and target != name:
        found.add(target)
  return found


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
  modules = module_files(package)
  return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One circle of imports as [a, b, ..., a], or None."""
  state, stack = {}, []

  def visit(node: str) -> list[str] | None:
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    state[node] = "done"
    stack.pop()
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


GRAPH = import_graph()


def test_the_graph_sees_every_kind_of_import():
  assert {"resnet_jax.analysis.trained", "resnet_jax.data.augment"} <= GRAPH["resnet_jax.analysis.landscape"]
  assert "resnet_jax.report.index" in GRAPH["resnet_jax.cli"]
  assert "resnet_jax.data.registry" in GRAPH["resnet_jax.config"]  # `from resnet_jax.data import registry`


def test_a_circle_is_found_and_named(tmp_path):
  package = tmp_path / "resnet_jax"
  (package / "sub").mkdir(parents=True)
  (package / "__init__.py").write_text("")
  (package / "sub" / "__init__.py").write_text("")
  (package / "a.py").write_text("from resnet_jax.sub import b\n")
  (package / "sub" / "b.py").write_text("def f():\n  from .c import g\n")
  (package / "sub" / "c.py").write_text("def g():\n  from .. import a\n")
  assert find_cycle(import_graph(package)) == ["resnet_jax.a", "resnet_jax.sub.b", "resnet_jax.sub.c", "resnet_jax.a"]
  (package / "sub" / "c.py").write_text("import numpy\n")
  assert find_cycle(import_graph(package)) is None


def test_no_import_circle_in_resnet_jax():
  cycle = find_cycle(GRAPH)
  assert cycle is None, "import circle: " + " -> ".join(cycle)


def _crossing(source: str, targets: tuple[str, ...]) -> list[str]:
  return sorted(f"{name} imports {dep}" for name, deps in GRAPH.items()
                if name == source or name.startswith(source + ".")
                for dep in deps if any(dep == t or dep.startswith(t + ".") for t in targets))


@pytest.mark.parametrize("source, forbidden", [
    ("resnet_jax.analysis", ("resnet_jax.report", "resnet_jax.studies", "resnet_jax.cli")),  # computing never draws
    ("resnet_jax.studies", ("resnet_jax.report", "resnet_jax.cli")),  # the report reads studies, not the reverse
    ("resnet_jax.report", ("resnet_jax.cli",)),
    ("resnet_jax.train", ("resnet_jax.analysis", "resnet_jax.report", "resnet_jax.studies")),
    ("resnet_jax.models", ("resnet_jax.analysis", "resnet_jax.report", "resnet_jax.studies", "resnet_jax.train",
                           "resnet_jax.config", "resnet_jax.platforms")),  # the network knows no platform
    ("resnet_jax.platforms", ("resnet_jax.analysis", "resnet_jax.report", "resnet_jax.studies", "resnet_jax.train",
                              "resnet_jax.config", "resnet_jax.cli")),
    ("resnet_jax.data", ("resnet_jax.config", "resnet_jax.analysis", "resnet_jax.report", "resnet_jax.studies",
                         "resnet_jax.train")),
    ("resnet_jax.config", ("resnet_jax.data.imagenet",)),
])
def test_arrows_point_one_way(source, forbidden):
  assert _crossing(source, forbidden) == []


def test_importing_every_module_starts_no_jax_backend():
  """XLA reads the CPU split (XLA_FLAGS) when JAX's backend starts: no module may start it as it is imported."""
  names = sorted(module_files())
  code = ("import importlib, sys\n"
          f"for name in {names!r}: importlib.import_module(name)\n"
          "from jax._src import xla_bridge\n"
          "print(sorted(xla_bridge._backends), 'jax' in sys.modules)")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"), cwd=PACKAGE.parent)
  assert run.returncode == 0, run.stderr.strip().splitlines()[-1] + "\n" + run.stderr[-2000:]  # the error first
  assert run.stdout.split() == ["[]", "True"]
