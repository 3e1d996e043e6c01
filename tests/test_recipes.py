"""docs/architecture.md's recipes run as written: a new method, backbone and data source each train two steps."""
import pathlib
import re

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
RECIPES = {"Adding a method", "Adding a backbone", "Adding a data source"}


def _recipes() -> dict[str, str]:
    """Recipe title -> its python block, from docs/architecture.md."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    blocks = {}
    for section in sections:
        title, _, body = section.partition("\n")
        code = re.search(r"```python\n(.*?)```", body, flags=re.DOTALL)
        if code:
            blocks[title.strip()] = code.group(1)
    return blocks


@pytest.fixture
def clean_registries():
    """Registrations are global: each recipe's are removed afterwards."""
    from jaxretrieval import data, methods, models

    registries = (methods.METHODS, models.BACKBONES, data.SOURCES)
    before = [dict(registry) for registry in registries]
    yield
    for registry, saved in zip(registries, before):
        registry.clear()
        registry.update(saved)


def test_every_recipe_has_a_code_block():
    assert set(_recipes()) == RECIPES


@pytest.mark.parametrize("title", sorted(RECIPES))
def test_recipe_trains_two_steps_and_evaluates(title, tmp_path, clean_registries):
    namespace = {"workdir": tmp_path / "run", "__name__": "recipe"}
    exec(compile(_recipes()[title], f"docs/architecture.md: {title}", "exec"), namespace)
    result = namespace["result"]
    assert int(result.state.step) == 2
    assert result.eval_metrics and all(0.0 <= value <= 1.0 for value in result.eval_metrics.values())
    assert (tmp_path / "run" / "eval" / "metrics.json").is_file()
    if title == "Adding a method":
        assert result.state.extras["codes"].shape == (10, 16)  # the method's extras are in the state
    if title == "Adding a data source":
        assert result.eval_metrics["mAP"] > 0.25  # 4 classes: anything learned beats chance a little
