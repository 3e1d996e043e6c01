"""The README's "use the losses in your own JAX code" example must run as printed."""
import math
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_loss_example_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README.md has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {})
    loss, mean_ap = (float(value) for value in capsys.readouterr().out.split())
    assert math.isfinite(loss) and loss > 0
    assert 0.0 <= mean_ap <= 1.0
