"""The architecture, checked: both backends implement the Backend interface, method for method
and signature for signature; every cell has kernels on every backend; and no code outside the
registries (rnnkit/cells.py, each backend's KERNELS, kernels/*/buffers.py) compares a cell's
name, so a new cell is a registration, not a hunt through the code."""
import ast
import inspect
from pathlib import Path

import pytest

from rnnkit import cells
from rnnkit.backends import Backend
from rnnkit.backends.cpu import CPUBackend
from rnnkit.backends.cuda import CUDABackend

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = [CPUBackend, CUDABackend]


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
