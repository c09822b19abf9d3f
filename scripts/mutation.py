"""Mutation testing: does the test suite notice a small bug in the training maths?

Each mutant changes one thing in one target module — an arithmetic operator (+ ↔ −, × ↔ ÷), a
comparison (< ↔ ≤, > ↔ ≥, == ↔ !=), a numeric constant (c → 2c, 0 ↔ 1), a unary minus dropped, a
factor dropped (`w * loss` → `loss`), two variables of one arithmetic expression swapped
(`d * ema + (1 - d) * g` → `d * g + (1 - d) * ema`) —
and the chosen tests run against it in a scratch copy of the tree. A mutant the tests fail on is
"killed"; one they pass on "survived": a bug a user could get that no test catches. Not in CI (it
runs the tests once per mutant); run it after changing the maths or its tests:

    python scripts/mutation.py --targets=esrgan_tf/train/losses.py \
        --tests=tests/test_losses.py --out=/tmp/mutation.json

Only code inside function bodies is mutated (not docstrings, messages or defaults in signatures).
Our own small runner rather than mutmut/cosmic-ray: those rewrite the package in place or need a
config per module; this one copies the tree once and mutates by source span, so a mutant is
one small, local edit away from the original.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

_TARGETS = flags.DEFINE_list("targets", ["esrgan_tf/train/losses.py"],
                             "Python files to mutate (repo-relative).")
_TESTS = flags.DEFINE_list("tests", ["tests/test_losses.py"], "pytest targets run per mutant.")
_MAX = flags.DEFINE_integer("max_mutants", 0, "Sample at most this many mutants (0: all).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample.")
_TIMEOUT = flags.DEFINE_integer("timeout", 600, "Seconds per mutant's test run.")
_OUT = flags.DEFINE_string("out", None, "Write the results here as JSON.")
_FUNCTIONS = flags.DEFINE_list("functions", [],
                               "Only mutate inside these function names (empty: all).")

_BINOP_SWAPS = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"),
                ast.Div: ("/", "*"), ast.Pow: ("**", "*")}
_CMP_SWAPS = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="),
              ast.GtE: (">=", ">"), ast.Eq: ("==", "!="), ast.NotEq: ("!=", "==")}


@dataclasses.dataclass
class Mutant:
  path: str
  line: int
  start: int  # absolute character offsets in the file
  end: int
  replacement: str
  description: str


def _offsets(source: str) -> list[int]:
  starts, total = [], 0
  for line in source.splitlines(keepends=True):
    starts.append(total)
    total += len(line)
  return starts


def _docstring_nodes(tree: ast.AST) -> set[int]:
  ids = set()
  for node in ast.walk(tree):
    body = getattr(node, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
        body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
      ids.add(id(body[0].value))
  return ids


def _operator_span(source: str, left: ast.AST, right: ast.AST, starts: list[int], symbol: str):
  """The character span of `symbol` between two operand nodes, or None."""
  lo = starts[left.end_lineno - 1] + left.end_col_offset
  hi = starts[right.lineno - 1] + right.col_offset
  index = source.find(symbol, lo, hi)
  while index != -1:
    # "*" must not be half of "**", "<" not half of "<=".
    after = source[index + len(symbol):index + len(symbol) + 1]
    before = source[index - 1:index]
    if after not in ("*", "=", "/") and before not in ("*", "/", "<", ">", "=", "!"):
      return index, index + len(symbol)
    index = source.find(symbol, index + 1, hi)
  return None


def find_mutants(path: str, functions: frozenset = frozenset()) -> list[Mutant]:
  """Lists one-token mutants inside the function bodies of a Python file."""
  with open(path) as f:
    source = f.read()
  tree = ast.parse(source)
  starts = _offsets(source)
  skip = _docstring_nodes(tree)
  mutants = []

  def visit(node, inside: bool):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      if functions and node.name not in functions and not inside:
        for child in node.body:  # nested functions may still match
          visit(child, False)
        return
      for child in node.body:
        visit(child, True)
      return
    if inside:
      _mutants_of(node)
    for child in ast.iter_child_nodes(node):
      visit(child, inside)

  def add(start, end, replacement, line, what):
    mutants.append(Mutant(path, line, start, end, replacement, what))

  def span_of(node):
    return (starts[node.lineno - 1] + node.col_offset,
            starts[node.end_lineno - 1] + node.end_col_offset)

  def _mutants_of(node):
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mult, ast.Div)):
      start, end = span_of(node)
      keep = [node.left, node.right] if isinstance(node.op, ast.Mult) else [node.left]
      for operand in keep:
        lo, hi = span_of(operand)
        text = source[lo:hi] if not isinstance(operand, ast.BinOp) else f"({source[lo:hi]})"
        add(start, end, text, node.lineno, f"keep only {source[lo:hi]!r}")
    # Swap two variables once per whole arithmetic expression (its outermost BinOp).
    if isinstance(node, ast.BinOp) and not isinstance(parents.get(id(node)), ast.BinOp):
      names = {}
      for sub in ast.walk(node):
        parent = parents.get(id(sub))
        is_value = not (isinstance(parent, ast.Attribute) or
                        (isinstance(parent, ast.Call) and parent.func is sub))
        if isinstance(sub, ast.Name) and is_value and sub.id not in names:
          names[sub.id] = sub  # values only: swapping a module or function name is noise
      ids = sorted(names)
      for i, a in enumerate(ids):
        for b in ids[i + 1:]:
          start, end = span_of(node)
          text = source[start:end]
          swapped = _swap_names(text, a, b)
          if swapped != text:
            add(start, end, swapped, node.lineno, f"swap {a} <-> {b}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
      old, new = _BINOP_SWAPS[type(node.op)]
      span = _operator_span(source, node.left, node.right, starts, old)
      if span:
        add(*span, new, node.lineno, f"{old} -> {new}")
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_SWAPS:
      old, new = _CMP_SWAPS[type(node.ops[0])]
      span = _operator_span(source, node.left, node.comparators[0], starts, old)
      if span:
        add(*span, new, node.lineno, f"{old} -> {new}")
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
      start = starts[node.lineno - 1] + node.col_offset
      add(start, start + 1, "", node.lineno, "drop unary -")
    elif (isinstance(node, ast.Constant) and id(node) not in skip and
          type(node.value) in (int, float) and not isinstance(node.value, bool)):
      start = starts[node.lineno - 1] + node.col_offset
      end = starts[node.end_lineno - 1] + node.end_col_offset
      value = node.value
      new = {0: "1", 1: "0"}.get(value, repr(value * 2))
      add(start, end, new, node.lineno, f"{source[start:end]} -> {new}")

  parents = {}
  for parent in ast.walk(tree):
    for child in ast.iter_child_nodes(parent):
      parents[id(child)] = parent
  visit(tree, False)
  return mutants


def _swap_names(text: str, a: str, b: str) -> str:
  """Swaps two identifiers in an expression's source text (whole words only)."""
  pattern = re.compile(rf"(?<![\w.])({re.escape(a)}|{re.escape(b)})(?!\w)")
  return pattern.sub(lambda m: b if m.group(1) == a else a, text)


def run_tests(tree: str, tests: list[str], timeout: int) -> str:
  """'killed', 'survived' or 'timeout' for the tests run in `tree`."""
  env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
  try:
    result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                             *tests], cwd=tree, env=env, capture_output=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    return "timeout"
  return "survived" if result.returncode == 0 else "killed"


def main(argv) -> None:
  del argv
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  mutants = []
  for target in _TARGETS.value:
    mutants += find_mutants(os.path.join(repo, target), frozenset(_FUNCTIONS.value))
  if _MAX.value and len(mutants) > _MAX.value:
    mutants = sorted(random.Random(_SEED.value).sample(mutants, _MAX.value),
                     key=lambda m: (m.path, m.start))
  print(f"{len(mutants)} mutants in {', '.join(_TARGETS.value)}; tests: {' '.join(_TESTS.value)}",
        flush=True)
  scratch = tempfile.mkdtemp(prefix="mutation_")
  tree = os.path.join(scratch, "tree")
  try:
    shutil.copytree(repo, tree, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__"))
    baseline = run_tests(tree, _TESTS.value, _TIMEOUT.value)
    if baseline != "survived":
      raise app.UsageError(f"the tests do not pass on the unmutated tree ({baseline})")
    results = []
    for i, m in enumerate(mutants, 1):
      copy = os.path.join(tree, os.path.relpath(m.path, repo))
      with open(m.path) as f:
        original = f.read()
      mutated = original[:m.start] + m.replacement + original[m.end:]
      with open(copy, "w") as f:
        f.write(mutated)
      begin = time.perf_counter()
      outcome = run_tests(tree, _TESTS.value, _TIMEOUT.value)
      with open(copy, "w") as f:
        f.write(original)
      where = f"{os.path.relpath(m.path, repo)}:{m.line}"
      line = original.splitlines()[m.line - 1].strip()
      results.append(dict(where=where, change=m.description, line=line, outcome=outcome))
      print(f"[{i}/{len(mutants)}] {outcome:8s} {where} {m.description}   "
            f"({time.perf_counter() - begin:.0f} s)", flush=True)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  killed = sum(r["outcome"] != "survived" for r in results)
  score = killed / len(results) if results else 1.0
  print(f"mutation score: {killed}/{len(results)} killed ({100 * score:.1f} %)")
  for r in results:
    if r["outcome"] == "survived":
      print(f"  survived: {r['where']} {r['change']}: {r['line']}")
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(dict(targets=_TARGETS.value, tests=_TESTS.value, score=score, results=results),
                f, indent=2)


if __name__ == "__main__":
  app.run(main)
