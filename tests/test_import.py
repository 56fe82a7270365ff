"""The flight package must import and run its CLI without torch."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    prelude = "import sys; sys.modules['torch'] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_import_without_torch() -> None:
    r = _run_blocked(
        "import kumo_edge, kumo_edge.cli, kumo_edge.io, kumo_edge.tiling, kumo_edge.clouds, kumo_edge.metrics\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print('ok')"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_blocking_torch_really_blocks() -> None:
    # guards the test above: with the block in place, importing torch must fail
    r = _run_blocked("import torch")
    assert r.returncode != 0
    assert "ModuleNotFoundError" in r.stderr or "ImportError" in r.stderr


def test_cli_runs_without_torch() -> None:
    r = _run_blocked("from kumo_edge.cli import main\nmain(['info', '--help'])")
    assert r.returncode == 0, r.stderr
    assert "RASTER" in r.stdout


def test_core_dependencies_are_the_flight_set() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = sorted(d.split(">")[0].split("=")[0].split("<")[0].strip() for d in deps)
    assert names == ["click", "numba", "numpy", "onnxruntime", "rasterio", "tqdm"]


def test_shipped_models_load_and_run_without_torch() -> None:
    r = _run_blocked(
        "import numpy as np\n"
        "from kumo_edge.physics import as_remover\n"
        "from kumo_edge.runtime import shipped_models, load_model\n"
        "found = shipped_models()\n"
        "assert {'hsi32', 'rgbn'} <= set(found), found\n"
        "for name, files in sorted(found.items()):\n"
        "    want = {'detector'} if name == 'swir6' else {'detector', 'generator'}\n"
        "    assert set(files) == want, (name, files)  # swir6 ships a detector only\n"
        "    for kind, path in sorted(files.items()):\n"
        "        m = as_remover(load_model(path, threads=1))  # physics: the inversion too\n"
        "        c = m.contract\n"
        "        assert c.kind == kind and c.band_set == name and c.precision == 'int8'\n"
        "        x = np.full((1, len(c.bands), c.tile, c.tile), 0.2, np.float32)\n"
        "        y = m.run(x)\n"
        "        assert np.isfinite(y).all() and y.shape[2:] == x.shape[2:]\n"
        "        print(name, kind, y.shape[1])\n"
        "assert 'torch' not in [k for k, v in sys.modules.items() if v is not None]\n"
    )
    assert r.returncode == 0, r.stderr
    assert "hsi32 generator 32" in r.stdout and "rgbn detector 4" in r.stdout
    assert "swir6 detector 4" in r.stdout  # four class probabilities


def _module_imports(path: Path) -> set[str]:
    """kumo_edge modules that ``path`` imports when it is imported: module-level imports only
    (imports inside functions are deliberate late imports; ``if TYPE_CHECKING:`` never runs)."""
    import ast

    pkg = "kumo_edge"
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for n in nodes:
            if isinstance(n, ast.If):
                t = n.test
                if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
                    isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
                ):
                    visit(n.orelse)
                    continue
                visit(n.body)
                visit(n.orelse)
            elif isinstance(n, ast.Try):
                visit(n.body)
                for h in n.handlers:
                    visit(h.body)
            elif isinstance(n, ast.ImportFrom):
                if n.level == 1:
                    if n.module:
                        out.add(n.module.split(".")[0])
                    else:  # from . import x
                        out.update(a.name for a in n.names)
                elif n.module and n.module.startswith(pkg + "."):
                    out.add(n.module.split(".")[1])
            elif isinstance(n, ast.Import):
                for a in n.names:
                    if a.name.startswith(pkg + "."):
                        out.add(a.name.split(".")[1])

    visit(ast.parse(path.read_text()).body)
    return out


def test_no_import_cycle_in_the_flight_package() -> None:
    src = ROOT / "kumo_edge"
    mods = {p.stem: p for p in src.glob("*.py") if p.stem != "__init__"}
    graph = {m: sorted(_module_imports(p) & set(mods)) for m, p in mods.items()}
    assert "runtime" in graph["stream"] and graph["baselines"] == sorted(
        set(graph["baselines"]) - {"runtime", "physics"}
    )
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def dfs(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                return [*path[path.index(d) :], d] if d in path else [m, d]
            if d not in state and (c := dfs(d, [*path, d])):
                return c
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = dfs(m, [m])
            assert cycle is None, "import cycle: " + " -> ".join(cycle)
    r = subprocess.run(
        [sys.executable, "-c", "import kumo_edge.runtime, kumo_edge.baselines"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr


def test_flight_code_never_imports_the_ground_side() -> None:
    # dask and pystac blocked: the flight modules and the CLI still import and run, and
    # `batch` says which extra it needs in one line
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "for m in ('dask', 'distributed', 'pystac'): sys.modules[m] = None\n"
            "import kumo_edge, kumo_edge.cli, kumo_edge.pipeline, kumo_edge.process, kumo_edge.stream\n"
            "from kumo_edge.cli import main\n"
            "main(['batch', 'x.tif', '--out', 'o'])\n",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        "Error: kumo-edge batch needs the ground extra: pip install 'kumo-edge[ground]'"
    ]
    flight = [p for p in (ROOT / "kumo_edge").rglob("*.py") if "ground" not in p.parts]
    for p in flight:
        text = p.read_text()
        for mod in ("dask", "distributed", "pystac"):
            assert f"import {mod}" not in text and f"from {mod}" not in text, (p.name, mod)


def test_flight_tests_run_without_torch() -> None:
    # the runtime, stream and pipeline tests load committed ONNX fixtures: with torch blocked
    # they run (only the torch <-> ONNX parity and the export-side checks skip)
    r = _run_blocked(
        "import pytest\n"
        "sys.exit(pytest.main(['-q', '-p', 'no:logging', '-p', 'no:cacheprovider', '-rs',\n"
        "    'tests/test_runtime.py', 'tests/test_stream.py', 'tests/test_pipeline.py']))\n"
    )
    assert r.returncode == 0, r.stdout[-2000:]
    tail = r.stdout.strip().splitlines()[-1]
    passed = int(tail.split(" passed")[0].split()[-1])
    skipped = int(tail.split(" skipped")[0].split()[-1]) if " skipped" in tail else 0
    assert passed >= 25 and skipped <= 2, tail
