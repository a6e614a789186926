"""The architecture, checked: rnnkit's imports form no cycle and its layers point one way (CLI ->
API -> tools -> training -> model -> backends -> kernels, the corpus beside the model;
docs/architecture.md); both backends implement the Backend interface, method for method and
signature for signature; every cell has kernels on every backend; and no code outside the
registries (rnnkit/cells.py, each backend's KERNELS, kernels/*/buffers.py) compares a cell's
name, so a new cell is a registration, not a hunt through the code."""
import ast
import inspect
import re
from pathlib import Path

import pytest

from rnnkit import cells
from rnnkit.backends import Backend
from rnnkit.backends.cpu import CPUBackend
from rnnkit.backends.cuda import CUDABackend

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = [CPUBackend, CUDABackend]

# The layers (docs/architecture.md draws them), each a package of rnnkit but the foundation,
# and what each may import besides itself. The foundation, small modules at rnnkit/'s top,
# imports nothing of rnnkit but the foundation, and every layer may read it. The corpus stands
# beside the model: it reads the foundation only. The training layer takes kernels/cache.py (the
# compile cache), no kernel (KERNEL_USERS). rnnkit/__init__.py (the package's facade, over the
# API) and __main__ (over the CLI) are no layer's; every other module is one's.
FOUNDATION = {"rnnkit.version", "rnnkit.errors", "rnnkit.console", "rnnkit.cores", "rnnkit.files",
              "rnnkit.lock", "rnnkit.h5", "rnnkit.metrics", "rnnkit.cells",
              "rnnkit.checkpoint_format", "rnnkit.blas_start"}
BELOW_API = {"tools", "training", "model", "corpus", "backends", "foundation"}
LAYERS = {
    "foundation": (FOUNDATION, set()),
    "kernels": ({"rnnkit.kernels"}, {"foundation"}),
    "backends": ({"rnnkit.backends"}, {"kernels", "foundation"}),
    "corpus": ({"rnnkit.corpus"}, {"foundation"}),
    "model": ({"rnnkit.model"}, {"backends", "foundation"}),
    "training": ({"rnnkit.training"}, {"model", "corpus", "backends", "kernels", "foundation"}),
    "tools": ({"rnnkit.tools"}, {"training", "model", "corpus", "backends", "foundation"}),
    "api": ({"rnnkit.api", "rnnkit.demo"}, BELOW_API),
    "cli": ({"rnnkit.cli"}, {"api"} | BELOW_API),
}
OUTSIDE = {"rnnkit", "rnnkit.__main__"}
# Who may import a backend's own kernels (rnnkit/kernels/cpu, cuda): the kernels and the
# backend layer.
KERNEL_USERS = {"rnnkit.kernels", "rnnkit.backends"}

def modules():
    """Dotted name -> file of every module of rnnkit (cli/ installs as rnnkit.cli)."""
    out = {}
    for path in [*ROOT.glob("rnnkit/**/*.py"), *ROOT.glob("cli/*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[0] == "cli":
            parts.insert(0, "rnnkit")
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph():
    """Module -> the modules of rnnkit it imports, at module level or inside functions."""
    mods = modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                assert not isinstance(node, ast.ImportFrom), f"{path}: a relative import"
                continue
            for name in names:
                while name and name not in mods:        # a name, not a module: its module
                    name = name.rpartition(".")[0]
                if name and name != m:
                    graph[m].add(name)
    return graph


def cycles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            if len(comp) > 1:
                out.append(sorted(comp))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def in_group(module, group):
    return any(module == g or module.startswith(g + ".") for g in group)


def layer(module):
    """The name of `module`'s layer, or None."""
    for name, (group, _) in LAYERS.items():
        if module in group if name == "foundation" else in_group(module, group):
            return name
    return None

def kernel_folder(module):
    """"cpu" or "cuda" for a module of that kernel folder, else None."""
    for folder in ("cpu", "cuda"):
        if in_group(module, {f"rnnkit.kernels.{folder}"}):
            return folder
    return None


def test_imports_form_no_cycle():
    assert cycles(import_graph()) == []


def test_every_module_has_a_layer():
    loose = sorted(m for m in import_graph() if m not in OUTSIDE and layer(m) is None)
    assert not loose, f"a package of its own, or a layer for: {loose}"


def test_layers_point_one_way():
    wrong = []
    for m, imported in sorted(import_graph().items()):
        for n in sorted(imported):
            here, there = layer(m), layer(n)
            if here is not None and there not in (here, *LAYERS[here][1]):
                wrong.append(f"{m} ({here}) imports {n} ({there})")
            elif n.startswith(("rnnkit.kernels.cpu", "rnnkit.kernels.cuda")) and \
                    not in_group(m, KERNEL_USERS):
                wrong.append(f"{m} imports {n}, a backend's kernels")
            elif {kernel_folder(m), kernel_folder(n)} == {"cpu", "cuda"}:
                wrong.append(f"{m} imports {n}: one backend's kernels use the other's")
    assert not wrong, "\n".join(wrong)


def test_the_layers_check_would_catch_an_upward_import():
    assert "model" not in LAYERS["corpus"][1] and "training" not in LAYERS["model"][1]
    assert layer("rnnkit.training.loop") == "training" and layer("rnnkit.cells") == "foundation"
    assert layer("rnnkit.cli.train") == "cli" and layer("rnnkit.tools.plot") == "tools"
    assert layer("rnnkit.stray") is None

def test_the_graph_sees_every_kind_of_import():
    graph = import_graph()
    assert "rnnkit.kernels.cpu.compile" in graph["rnnkit.kernels.cpu.lstm"]  # from x.y import z
    assert "rnnkit.kernels.cache" in graph["rnnkit.training.runtime"]     # from x import y
    assert "rnnkit.backends.cpu" in graph["rnnkit.backends"]                 # in a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def protocol_methods():
    return {name: fn for name, fn in vars(Backend).items()
            if callable(fn) and not name.startswith("_")}


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.__name__)
def test_backend_implements_the_interface(cls):
    methods = protocol_methods()
    assert len(methods) > 30
    for name, fn in methods.items():
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}"
        assert inspect.signature(getattr(cls, name)) == inspect.signature(fn), \
            f"{cls.__name__}.{name}{inspect.signature(getattr(cls, name))} differs from " \
            f"Backend.{name}{inspect.signature(fn)}"
    assert isinstance(getattr(cls, "name"), str)


def test_the_cpu_backend_is_a_backend_at_run_time():
    assert isinstance(CPUBackend(), Backend)
    assert not isinstance(object(), Backend)


@pytest.mark.parametrize("module", ["cpu", "cuda"])
def test_every_cell_has_kernels_and_arrays_on_every_backend(module):
    import importlib

    registry = importlib.import_module(f"rnnkit.backends.{module}").KERNELS
    assert set(registry) == set(cells.NAMES)
    for name, kernels in registry.items():
        cell = cells.get(name)
        assert kernels.layout.cell.gates == cell.gates
        buffers = kernels.layout.buffers(3, 2, 4, 5)
        assert buffers["hs"] == (4, 2, 5)
        assert ("c" in buffers) == ("c" in cell.state)


def test_the_gpu_allocates_none_of_the_cpus_scratch():
    from rnnkit.kernels.cuda import buffers

    for layout in (buffers.LSTM, buffers.GRU, buffers.RNN):
        names = set(layout.buffers(3, 2, 4, 5)) | set(layout.scratch(3, 2, 4, 5))
        assert not names & {"wt", "work", "work_t", "work_h", "dht", "dct", "dwt", "dxt"}


# Where a cell's name may appear in a comparison: the registries.
REGISTRIES = {"rnnkit/cells.py"}


def _names_in(node):
    """Cell names among the string constants of a comparison operand (or a tuple of them)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {i.value for i in items if isinstance(i, ast.Constant) and i.value in cells.NAMES}


def test_no_code_compares_a_cell_name_outside_the_registries():
    found = []
    for path in sorted([*ROOT.glob("rnnkit/**/*.py"), *ROOT.glob("cli/*.py")]):
        rel = str(path.relative_to(ROOT))
        if rel in REGISTRIES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = set().union(*(_names_in(n) for n in [node.left, *node.comparators]))
                if names:
                    found.append(f"{rel}:{node.lineno} compares {sorted(names)}")
    assert not found, "branch on the cell's declared traits instead:\n" + "\n".join(found)


def test_the_check_would_catch_a_switch():
    tree = ast.parse('if cell.name == "lstm" or cfg.cell in ("gru", "x"): pass')
    compares = [n for n in ast.walk(tree) if isinstance(n, ast.Compare)]
    assert [sorted(set().union(*(_names_in(x) for x in [c.left, *c.comparators])))
            for c in compares] == [["lstm"], ["gru"]]


PATH_RE = re.compile(r"(?<![\w/.*-])((?:rnnkit|kernels|tests|bench|docs|cli)/[\w/.-]*\.(?:py|md|toml))\b")


def test_every_path_the_docs_and_docstrings_name_exists():
    """A path written in a docstring, comment or doc (rnnkit/..., kernels/..., tests/...,
    bench/..., docs/..., cli/...) names a file of the repository: a moved or renamed file
    leaves no stale pointer behind."""
    texts = [*ROOT.glob("rnnkit/**/*.py"), *ROOT.glob("cli/*.py"), *ROOT.glob("docs/*.md"),
             *ROOT.glob("bench/*.py"), *ROOT.glob("tests/*.py"), ROOT / "README.md"]
    missing = []
    for path in texts:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for found in PATH_RE.findall(line):
                if not any((ROOT / prefix / found).exists() for prefix in ("", "rnnkit")):
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {found}")
    assert not missing, "\n".join(missing)


def test_the_docs_draw_these_layers():
    """docs/architecture.md's table of what each layer may import is LAYERS."""
    rows = {}
    for line in (ROOT / "docs" / "architecture.md").read_text().splitlines():
        cells_ = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells_) == 3 and cells_[0] in LAYERS:
            rows[cells_[0]] = set() if cells_[2] == "nothing else" else \
                {name.strip() for name in cells_[2].split(",")}
    assert rows == {name: allowed for name, (_, allowed) in LAYERS.items()}
