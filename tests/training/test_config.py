"""jaxretrieval.training.config: the schema, loading with ml_collections, and errors a user can act on."""
import ast

import ml_collections
import pytest

from jaxretrieval.training import config as config_lib
from .trainer_test_utils import REPO_ROOT, run_module

CONFIG_FILES = sorted((REPO_ROOT / "configs").glob("*.py"))


@pytest.mark.parametrize("form", [["--config", "configs/quickstart.py"], ["--config=configs/quickstart.py"]])
def test_an_unknown_override_key_is_a_one_line_error_naming_it_and_the_valid_keys(form, tmp_path):
    completed = run_module("jaxretrieval.train", *form, f"--workdir={tmp_path}", "--config.optimizer.lr=1")
    assert completed.returncode == 2, completed.stderr[-2000:]
    lines = completed.stderr.strip().splitlines()
    assert lines == [
        "error: --config.optimizer.lr: config.optimizer has no key 'lr' (keys: b1, b2, backbone_multiplier, eps, "
        "grad_clip_norm, learning_rate, momentum, name, nesterov, rmsprop_decay, weight_decay)"
    ], completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr and not (tmp_path / "checkpoints").exists()


def test_the_documented_typo_command_without_a_workdir_still_names_the_key():
    completed = run_module("jaxretrieval.train", "--config", "configs/quickstart.py", "--config.optimizer.lr=1")
    assert completed.returncode == 2
    assert completed.stderr.count("\n") == 1 and "optimizer.lr" in completed.stderr and "learning_rate" in completed.stderr


@pytest.mark.parametrize("arguments, expected", [
    (["--config=configs/nope.py", "--workdir=x"], "configs/nope.py"),
    (["--config=configs/csq_cifar10.py:bits=48", "--workdir=x"], "takes 'bits=' one of (16, 32, 64), got 'bits=48'"),
    (["--config=configs/smoke.py"], "--workdir"),
    (["--config=configs/smoke.py", "--workdir=x", "--config.batch_size=many"], "batch_size"),
])
def test_command_line_user_errors_exit_2_with_one_line(arguments, expected, tmp_path):
    completed = run_module("jaxretrieval.train", *arguments)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stderr.startswith("error: ") and completed.stderr.count("\n") == 1, completed.stderr[-2000:]
    assert expected in completed.stderr


def test_load_config_applies_overrides_and_names_unknown_keys_and_wrong_types():
    config = config_lib.load_config(str(REPO_ROOT / "configs" / "smoke.py"), {"optimizer.learning_rate": 0.5})
    assert config.optimizer.learning_rate == 0.5 and config.is_locked
    with pytest.raises(config_lib.ConfigError, match=r"config.optimizer has no key 'lr' \(keys: b1, b2,"):
        config_lib.load_config(str(REPO_ROOT / "configs" / "smoke.py"), {"optimizer.lr": 0.1})
    with pytest.raises(config_lib.ConfigError, match=r"config has no key 'optimiser'"):
        config_lib.load_config(str(REPO_ROOT / "configs" / "smoke.py"), {"optimiser.name": "sgd"})
    with pytest.raises(config_lib.ConfigError, match="batch_size"):
        config_lib.load_config(str(REPO_ROOT / "configs" / "smoke.py"), {"batch_size": "many"})
    with pytest.raises(config_lib.ConfigError, match="nope.py"):
        config_lib.load_config(str(REPO_ROOT / "configs" / "nope.py"))


def test_the_loss_section_is_the_methods_own_and_the_head_its_head():
    from jaxretrieval import methods

    for name, method_class in methods.METHODS.items():
        config = config_lib.base_config(name)
        assert config.loss.to_dict() == dict(method_class.loss_defaults)
        assert config.model.head == method_class.head
    with pytest.raises(ValueError, match="must be one of"):
        config_lib.base_config("hashnet")


def _assignments(path):
    """``(dotted key, literal value, line)`` of every ``config.a.b = <literal>`` in ``get_config``."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, parts = node.targets[0], []
            while isinstance(target, ast.Attribute):
                parts.append(target.attr)
                target = target.value
            if isinstance(target, ast.Name) and target.id == "config" and parts:
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue  # computed from the argument (bits, books): not a literal default
                yield ".".join(reversed(parts)), value, node.lineno


@pytest.mark.parametrize("path", CONFIG_FILES + [REPO_ROOT / "jaxretrieval" / "training" / "config.py"], ids=lambda path: path.name)
def test_config_files_set_only_what_differs_from_the_schema(path):
    source = path.read_text()
    method = "csq"
    for candidate in ("csq", "spq", "map_q"):
        if f'base_config("{candidate}")' in source:
            method = candidate
    base = config_lib.base_config(method)
    repeated = []
    for dotted_key, value, line in _assignments(path):
        if path.name == "config.py" and dotted_key.count(".") == 0:
            continue  # the schema itself
        node = base
        for part in dotted_key.split("."):
            node = node[part]
        if isinstance(node, ml_collections.ConfigDict):
            continue
        if node == value or (isinstance(node, tuple) and tuple(value) == node):
            repeated.append(f"line {line}: config.{dotted_key} = {value!r}")
    assert not repeated, f"{path.name} re-sets schema defaults: {repeated}"


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_no_config_defaults_to_a_data_path(path):
    spec = str(path) + (":bits=64" if "parse_bits" in path.read_text() else "")
    config = config_lib.load_config(spec)
    for key in ("root", "path", "train_list", "test_list", "database_list", "tfds_data_dir"):
        assert config.data[key] == "", f"{path.name}: config.data.{key} = {config.data[key]!r}"
