"""The package's shape: no import cycles (lazy imports included) and modules of readable size."""

import ast
import os
import re

import esrgan_tf

PACKAGE_DIR = os.path.dirname(esrgan_tf.__file__)
MAX_LINES = 500
# Modules allowed over MAX_LINES, each with its reason (none today: keep it that way).
OVER_LIMIT_ALLOWED: set[str] = set()


def _modules() -> dict[str, str]:
  """Module name → file, for every .py file of the package."""
  found = {}
  root = os.path.dirname(PACKAGE_DIR)
  for directory, _, files in os.walk(PACKAGE_DIR):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(directory, name)
        module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
        found[module.removesuffix(".__init__")] = path
  return found


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
  """esrgan_tf modules that `module` imports anywhere in its file (inside functions too)."""
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  targets = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = package
      for _ in range(max(node.level - 1, 0)):
        base = base.rpartition(".")[0]
      stem = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
      # `from pkg import name`: name may be a submodule or an attribute of pkg.
      targets += [f"{stem}.{alias.name}" for alias in node.names] + [stem]
  found = set()
  for target in targets:
    while target and target not in modules:
      target = target.rpartition(".")[0]
    # Importing one's own parent package is how a submodule gets its namespace, not a cycle.
    if target and target != module and not module.startswith(target + "."):
      found.add(target)
  return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One cycle (as a path a → … → a) per strongly connected component with a loop."""
  cycles, state = [], {}  # state: 1 = on the current path, 2 = done

  def visit(node, path):
    state[node] = 1
    path.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycles.append(path[path.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, path)
    path.pop()
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [])
  return cycles


def test_finds_a_cycle_when_there_is_one():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
  assert _cycles(graph) == [["a", "b", "c", "a"]]
  assert _cycles({"a": {"b"}, "b": set()}) == []


def test_import_walker_sees_lazy_and_relative_imports(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from esrgan_tf.inference import tiling\n  from .x import y\n")
  modules = {"esrgan_tf.inference.tiling": "", "esrgan_tf.pkg.x": "", "esrgan_tf.pkg.m": str(path)}
  assert _imports("esrgan_tf.pkg.m", str(path), modules) == {"esrgan_tf.inference.tiling",
                                                             "esrgan_tf.pkg.x"}


def test_no_import_cycles_lazy_imports_included():
  modules = _modules()
  assert "esrgan_tf.inference.resolver" in modules and "esrgan_tf.cli.upscale" in modules
  graph = {m: _imports(m, path, modules) for m, path in modules.items()}
  assert "esrgan_tf.inference.tflite" in graph["esrgan_tf.inference.resolver"]  # lazy, seen
  cycles = _cycles(graph)
  assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_modules_are_at_most_500_lines():
  sizes = {}
  for module, path in _modules().items():
    with open(path, encoding="utf-8") as f:
      sizes[module] = sum(1 for _ in f)
  over = {m: n for m, n in sizes.items() if n > MAX_LINES and m not in OVER_LIMIT_ALLOWED}
  assert not over, f"modules over {MAX_LINES} lines: {over}"
  # The allow-list only holds modules that are really over (so it empties as they are split).
  stale = sorted(m for m in OVER_LIMIT_ALLOWED if sizes.get(m, 0) <= MAX_LINES)
  assert not stale, f"no longer over {MAX_LINES} lines, remove from OVER_LIMIT_ALLOWED: {stale}"


# The layers, bottom to top: a subpackage imports only from its own layer or a lower one (lazy
# imports included). The package root (esrgan_tf/__init__.py: the Python API) is the top.
LAYERS = [
    ["core"],          # atomic writes, CPU features, precision, errors: no models
    ["images"],        # pixels, safe image files, encoders, MATLAB bicubic
    ["weights"],       # checkpoint formats and layouts, the published-weights registry
    ["models"],        # networks, built from configs, checkpoints, presets, training workdirs
    ["data"],          # training data: folders, TFRecords, augmentation, degradations
    ["export"],        # SavedModel, TFLite (writers)
    ["inference"],     # engines, the --model resolver, tiling, batch files
    ["evaluation"],    # metrics, report
    ["train"],         # loop, state, steps, losses, optimizer, configs
    ["serving", "beam"],  # applications: the TF Serving protocol server, Apache Beam pipelines
    ["benchmarking"],  # measurements
    ["cli"],           # absl entry points
]


def _layer_of(module: str) -> int:
  """Index in LAYERS of a module's subpackage (the root package: above everything)."""
  parts = module.split(".")
  if len(parts) == 1:
    return len(LAYERS)
  for i, names in enumerate(LAYERS):
    if parts[1] in names:
      return i
  raise AssertionError(f"{module}: its subpackage is not in LAYERS (add it, or move the module)")


def test_every_module_is_in_a_layer():
  for module in _modules():
    _layer_of(module)


def test_no_module_imports_a_higher_layer():
  modules = _modules()
  upward = []
  for module, path in sorted(modules.items()):
    for target in sorted(_imports(module, path, modules)):
      if _layer_of(target) > _layer_of(module):
        upward.append(f"{module} → {target}")
  assert not upward, "imports into a higher layer:\n" + "\n".join(upward)


def test_layer_check_sees_an_upward_import(tmp_path):
  path = tmp_path / "m.py"
  path.write_text("def f():\n  from esrgan_tf.inference import tiling\n")
  modules = {"esrgan_tf.inference.tiling": "", "esrgan_tf.images.m": str(path)}
  targets = _imports("esrgan_tf.images.m", str(path), modules)
  assert [t for t in targets if _layer_of(t) > _layer_of("esrgan_tf.images.m")] == [
      "esrgan_tf.inference.tiling"]


def test_the_architecture_page_lists_every_layer_and_module():
  """docs/architecture.md's table: each subpackage at its LAYERS number, each module in its row."""
  page = os.path.join(os.path.dirname(PACKAGE_DIR), "docs", "architecture.md")
  with open(page, encoding="utf-8") as f:
    rows = [line for line in f if re.match(r"\| \d+ \|", line)]
  missing = []
  for index, names in enumerate(LAYERS):
    for name in names:
      row = next((r for r in rows if f"`{name}/`" in r), None)
      if row is None or not row.startswith(f"| {index + 1} |"):
        missing.append(f"{name}/ (layer {index + 1})")
        continue
      for module in sorted(_modules()):
        parts = module.split(".")
        if len(parts) == 3 and parts[1] == name and not parts[2].startswith("__"):
          if f"`{parts[2]}`" not in row:
            missing.append(module)
  assert not missing, "docs/architecture.md does not list: " + ", ".join(missing)
