"""The layers as contracts: import-linter (pyproject.toml) passes, and fails when a contract is broken."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LINT_IMPORTS = pathlib.Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: pathlib.Path) -> subprocess.CompletedProcess:
    # The package is found through PYTHONPATH first, so a copy in a temporary folder shadows the
    # installed one; no cache is written into the tree.
    environment = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root, env=environment, capture_output=True, text=True, timeout=300,
    )


def test_the_import_contracts_hold():
    completed = _lint_imports(REPO_ROOT)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    assert "5 kept, 0 broken" in completed.stdout


@pytest.fixture
def package_copy(tmp_path) -> pathlib.Path:
    shutil.copytree(REPO_ROOT / "jaxretrieval", tmp_path / "jaxretrieval", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: pathlib.Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code + "\n")


def test_a_core_module_importing_flax_breaks_the_core_contract(package_copy):
    _append(package_copy / "jaxretrieval" / "codes.py", "import flax  # noqa: E402")
    completed = _lint_imports(package_copy)
    assert completed.returncode == 1, completed.stdout[-3000:]
    assert "The functional core imports only jax and numpy BROKEN" in completed.stdout
    assert "jaxretrieval.codes -> flax" in completed.stdout


def test_a_cycle_hidden_in_a_function_breaks_the_acyclic_contract(package_copy):
    _append(package_copy / "jaxretrieval" / "run_directory.py",
            "def _late():\n    from jaxretrieval.training import trainer  # noqa: F401")
    completed = _lint_imports(package_copy)
    assert completed.returncode == 1, completed.stdout[-3000:]
    assert "No import cycle anywhere in the package BROKEN" in completed.stdout


def test_importing_a_command_line_breaks_the_contract(package_copy):
    _append(package_copy / "jaxretrieval" / "evaluation" / "evaluator.py", "from jaxretrieval import evaluate  # noqa: E402")
    completed = _lint_imports(package_copy)
    assert completed.returncode == 1
    assert "The command lines are imported by nothing BROKEN" in completed.stdout
