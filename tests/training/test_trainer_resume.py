"""Pre-emption: a run killed mid-way (SIGKILL) resumes and ends bit-identical; SIGTERM checkpoints."""
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from .trainer_test_utils import REPO_ROOT, subprocess_environment

# Long enough (60 steps, a checkpoint every 5) that a kill right after the first checkpoint lands mid-run.
OVERRIDES = {
    "num_steps": 60,
    "checkpoint_every_steps": 5,
    "log_every_steps": 5,
    "keep_checkpoints": 2,
    "evaluate_at_end": False,
}


def _command(workdir: pathlib.Path) -> list[str]:
    flags = [f"--config.{key}={value}" for key, value in OVERRIDES.items()]
    return [sys.executable, "-m", "jaxretrieval.train", "--config=configs/smoke.py", f"--workdir={workdir}", *flags]


def _start(workdir: pathlib.Path) -> subprocess.Popen:
    return subprocess.Popen(
        _command(workdir), cwd=REPO_ROOT, env=subprocess_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_checkpoint(process: subprocess.Popen, workdir: pathlib.Path, *, after_step: int = 0, timeout: float = 240) -> None:
    """Polls until a complete checkpoint of a step > ``after_step`` exists (orbax renames it into place)."""
    checkpoints = workdir / "checkpoints"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if checkpoints.is_dir() and any(path.name.isdigit() and int(path.name) > after_step for path in checkpoints.iterdir()):
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited ({process.returncode}) before a checkpoint:\n{process.stdout.read()[-3000:]}")
        time.sleep(0.005)
    process.kill()
    raise AssertionError("no checkpoint appeared in time")


def _flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(path): np.asarray(value) for path, value in leaves}


def _saved_steps(workdir: pathlib.Path) -> list[int]:
    return sorted(int(path.name) for path in (workdir / "checkpoints").iterdir() if path.name.isdigit())


def test_preempted_then_killed_run_resumes_to_the_parameters_of_an_uninterrupted_run(tmp_path):
    """SIGTERM (checkpoint + exit 143), restart, SIGKILL mid-run, restart: the end equals one clean run."""
    from jaxretrieval.training import checkpoint, trainer
    from jaxretrieval.training import config as config_utils

    workdir = tmp_path / "interrupted"
    # 1. SIGTERM after the first checkpoint: a checkpoint at the step it stopped, exit status 143.
    process = _start(workdir)
    _wait_for_checkpoint(process, workdir)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, f"expected a pre-emption exit (the run may have finished first):\n{output[-3000:]}"
    stopped_at = int(output.split("SIGTERM: stopped at step ")[1].split(";")[0])
    assert _saved_steps(workdir)[-1] == stopped_at < 60

    # 2. Restart, and SIGKILL it once it has written a checkpoint past the pre-emption point.
    process = _start(workdir)
    _wait_for_checkpoint(process, workdir, after_step=stopped_at)
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert f"resuming from {workdir / 'checkpoints'} step {stopped_at}" in output
    assert _saved_steps(workdir)[-1] < 60, f"the run was not killed mid-way: {_saved_steps(workdir)}"

    # 3. The same command again runs to the end.
    resumed = subprocess.run(_command(workdir), cwd=REPO_ROOT, env=subprocess_environment(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout

    # Reference: the same config, uninterrupted, in this process (same 8 fake devices).
    reference_dir = tmp_path / "uninterrupted"
    trainer.train_and_evaluate(config_utils.load_config(str(REPO_ROOT / "configs" / "smoke.py"), OVERRIDES), reference_dir)
    expected = _flat(checkpoint.load_state_arrays(reference_dir))
    actual = _flat(checkpoint.load_state_arrays(workdir))
    assert expected.keys() == actual.keys()
    assert any("params" in key for key in expected) and any("opt_state" in key for key in expected)
    for key in expected:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(5, 61, 5)), "each logged step must appear once after the resumes"
