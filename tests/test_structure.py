"""The package's layering, read from the source: floors import only downward, no cycles, absl at the top.

Floors, lowest first (a module belongs to the floor of its longest listed prefix):
  ground      errors, _keras, io, reporting
  formats     bytes on disk <-> plain data (numpy, no TensorFlow)
  data        preprocessing, image sources, tf.data pipelines
  weights     filling a built Keras model from what formats decode
  models      configs, layers, builders
  analysis    per-layer costs, sizes; inference (the compiled forward pass)
  techniques  pruning, compression, training
  loading     anything on disk -> a model
  workflows   evaluation, DSD, the compression pipeline, search, export
  flags       absl flags and the binaries' error boundary
An import inside a function counts like any other.
"""

import ast
import pathlib

from tests.conftest import REPO

PACKAGE = REPO / "sqznet_tf"
FLOORS = [
    ("ground", ["sqznet_tf.errors", "sqznet_tf._keras", "sqznet_tf.io", "sqznet_tf.reporting"]),
    ("formats", ["sqznet_tf.formats"]),
    ("data", ["sqznet_tf.data"]),
    ("weights", ["sqznet_tf.weights"]),
    ("models", ["sqznet_tf.models"]),
    ("analysis", ["sqznet_tf.analysis", "sqznet_tf.inference"]),
    ("techniques", ["sqznet_tf.pruning", "sqznet_tf.compression", "sqznet_tf.training"]),
    ("loading", ["sqznet_tf.loading"]),
    ("workflows", ["sqznet_tf.evaluation", "sqznet_tf.pruning.dsd", "sqznet_tf.pruning.channel_prune",
                   "sqznet_tf.compression.pipeline",
                   "sqznet_tf.search", "sqznet_tf.export", "sqznet_tf.runtimes"]),
    ("flags", ["sqznet_tf.flags"]),
    ("package", ["sqznet_tf"]),  # the top-level __init__: public names, loaded lazily
]
NO_TENSORFLOW = ("sqznet_tf.formats", "sqznet_tf.models.configs", "sqznet_tf.io", "sqznet_tf.errors",
                 "sqznet_tf.data.spec", "sqznet_tf.training.config",
                 "sqznet_tf.compression.config", "sqznet_tf.compression.sharing",
                 "sqznet_tf.pruning.spec")


def modules():
  """{module name: path} of every module of the package."""
  out = {}
  for path in PACKAGE.rglob("*.py"):
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts = parts[:-1]
    out[".".join(parts)] = path
  return out


def imports(path: pathlib.Path, known=()):
  """(module, line) of every import statement of `path`: `from a import b` names a.b when that is a
  module in `known`, else a. (Importing a.b also runs a's __init__, which is not counted as an edge.)"""
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield a.name, node.lineno
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        yield (sub if sub in known else node.module), node.lineno


def graph():
  """{module: {imported package module: line}} for imports inside the package."""
  mods = modules()
  edges = {}
  for name, path in mods.items():
    out = {}
    for target, line in imports(path, mods):
      while target and target not in mods:
        target = target.rpartition(".")[0]
      if target and target != name and target.startswith("sqznet_tf"):
        out.setdefault(target, line)
    edges[name] = out
  return edges


def floor(module: str) -> int:
  best, level = -1, None
  for i, (_, prefixes) in enumerate(FLOORS):
    for p in prefixes:
      if (module == p or module.startswith(p + ".")) and len(p) > best:
        best, level = len(p), i
  assert level is not None, f"{module} is on no floor: add it to FLOORS"
  return level


def cycles(edges):
  """Strongly connected components with more than one module (Tarjan)."""
  index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

  def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        on.discard(w)
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        out.append(sorted(comp))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return out


def test_no_import_cycle():
  assert cycles(graph()) == []


def test_floors_import_only_downward():
  bad = []
  for module, targets in graph().items():
    if module == "sqznet_tf":
      continue
    for target, line in targets.items():
      if target == "sqznet_tf" or floor(target) > floor(module):
        bad.append(f"{module}:{line} imports {target} ({FLOORS[floor(module)][0]} -> "
                   f"{FLOORS[floor(target)][0] if target != 'sqznet_tf' else 'package'})")
  assert bad == []


def test_absl_only_in_flags_and_binaries():
  bad = [f"{name}:{line}" for name, path in modules().items() if name != "sqznet_tf.flags"
         for target, line in imports(path) if target == "absl" or target.startswith("absl.")]
  assert bad == []


def test_no_tensorflow_in_the_pure_floors():
  mods = modules()
  bad = [f"{name}:{line} imports {target}" for name, path in mods.items() if name.startswith(NO_TENSORFLOW)
         for target, line in imports(path)
         if target.split(".")[0] in ("tensorflow", "tf_keras", "keras") or target.startswith("sqznet_tf._keras")]
  assert bad == []


def test_a_training_config_is_checked_without_tensorflow():
  """sqznet-train's flags become a TrainConfig (and a bad value its one-line error) before TensorFlow
  is imported: a fresh interpreter builds and rejects configs with no tensorflow in sys.modules."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ("import sys\n"
          "from sqznet_tf.errors import SqznetError\n"
          "from sqznet_tf.training.config import TrainConfig\n"
          "from sqznet_tf.data.spec import DataSpec\n"
          "TrainConfig(data=DataSpec('embedded', image_size=32, augmentation='pad_crop_flip'))\n"
          "try:\n  TrainConfig(learning_rate=-0.1)\nexcept SqznetError as e:\n  print(e)\n"
          "print('tensorflow' in sys.modules)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
  assert out.splitlines() == ["learning_rate=-0.1 is not accepted; expected a number > 0", "False"], out


def test_graph_sees_the_imports():
  """The checks above would pass on an empty graph: it holds the edges every reader knows of."""
  edges = graph()
  assert "sqznet_tf.formats.sqz" in edges["sqznet_tf.weights"]
  assert "sqznet_tf.loading" in edges["sqznet_tf.compression.pipeline"]
  assert cycles({"a": {"b": 1}, "b": {"a": 2}}) == [["a", "b"]]
