"""launch/: the TPU pod and Slurm scripts print exactly the commands they would run (--dry-run)."""
import os
import pathlib
import shlex
import shutil
import subprocess

import pytest

LAUNCH = pathlib.Path(__file__).resolve().parents[1] / "launch"
REPO_ROOT = LAUNCH.parent


@pytest.fixture
def bare_path(tmp_path):
    """A PATH with the few tools the scripts need and no gcloud, sbatch or srun (as on a laptop)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "mktemp", "tar"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


def run_script(name, *arguments, path):
    return subprocess.run(
        ["bash", str(LAUNCH / name), *arguments],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_tpu_pod_dry_run_copies_installs_and_trains_on_every_worker(bare_path):
    result = run_script(
        "tpu_pod.sh", "--dry-run", "--name", "pod-v4-32", "--zone", "us-central2-b", "--project", "proj",
        "--config", "configs/mapq_cifar10.py", "--workdir", "gs://bucket/runs/mapq",
        "--", "--config.batch_size=4096", "--config.mesh=[('data', -1)]",
        path=bare_path,
    )
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()]
    assert [command[0] for command in commands] == ["tar", "gcloud", "gcloud", "gcloud", "gcloud"]
    assert commands[0][:3] == ["tar", "-C", str(REPO_ROOT)] and "--exclude=.venv" in commands[0]
    assert commands[1][:4] == ["gcloud", "compute", "tpus", "tpu-vm"] and commands[1][4] == "scp"
    ssh_prefix = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod-v4-32", "--worker=all",
                  "--zone", "us-central2-b", "--project", "proj", "--command"]
    for command in commands[2:]:
        assert command[:-1] == ssh_prefix
    install = shlex.split(commands[3][-1])
    assert install[-6:] == [".venv/bin/pip", "install", "--quiet", "-e", ".[train]", "jax[tpu]"]
    train = shlex.split(commands[4][-1])
    assert train == [
        "cd", "jaxretrieval", "&&", ".venv/bin/python", "-m", "jaxretrieval.train",
        "--config", "configs/mapq_cifar10.py", "--workdir", "gs://bucket/runs/mapq", "--jax_distributed=on",
        "--config.batch_size=4096", "--config.mesh=[('data', -1)]",
    ]


def test_tpu_pod_skips_copy_and_install_when_asked(bare_path):
    result = run_script(
        "tpu_pod.sh", "--dry-run", "--skip-copy", "--skip-install", "--name", "n", "--zone", "z",
        "--config", "c.py", "--workdir", "gs://w", path=bare_path,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert shlex.split(shlex.split(line)[-1])[-1] == "--jax_distributed=on"


def test_tpu_pod_errors(bare_path):
    missing = run_script("tpu_pod.sh", "--name", "n", "--zone", "z", "--config", "c.py", path=bare_path)
    assert missing.returncode == 2 and "--workdir is required" in missing.stderr
    unknown = run_script("tpu_pod.sh", "--nmae", "n", path=bare_path)
    assert unknown.returncode == 2 and "unknown argument '--nmae'" in unknown.stderr
    no_gcloud = run_script(
        "tpu_pod.sh", "--name", "n", "--zone", "z", "--config", "c.py", "--workdir", "gs://w", path=bare_path
    )
    assert no_gcloud.returncode == 127 and "gcloud not found" in no_gcloud.stderr
    assert no_gcloud.stdout == ""


def test_slurm_dry_run_prints_one_task_per_gpu_batch_script(bare_path):
    result = run_script(
        "slurm_gpu.sh", "--dry-run", "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu",
        "--config", "configs/mapq_cifar10.py", "--workdir", "/shared/runs/mapq",
        "--", "--config.micro_batch_size=256",
        path=bare_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    directives = {line.split("=")[0]: line.split("=", 1)[1] for line in lines if line.startswith("#SBATCH")}
    assert directives["#SBATCH --nodes"] == "2"
    assert directives["#SBATCH --ntasks-per-node"] == "8"
    assert directives["#SBATCH --gpus-per-node"] == "8"
    assert directives["#SBATCH --partition"] == "gpu"
    assert "#SBATCH --account" not in directives
    assert f"cd {REPO_ROOT}" in lines
    (srun,) = [shlex.split(line) for line in lines if line.startswith("srun")]
    assert srun == [
        "srun", "--kill-on-bad-exit=1", ".venv/bin/python", "-m", "jaxretrieval.train",
        "--config", "configs/mapq_cifar10.py", "--workdir", "/shared/runs/mapq", "--jax_distributed=on",
        "--config.micro_batch_size=256",
    ]
    assert lines[-1].startswith("sbatch")


def test_slurm_errors(bare_path):
    missing = run_script("slurm_gpu.sh", "--config", "c.py", "--workdir", "w", path=bare_path)
    assert missing.returncode == 2 and "--gpus-per-node is required" in missing.stderr
    bad_count = run_script(
        "slurm_gpu.sh", "--dry-run", "--nodes", "two", "--gpus-per-node", "8", "--config", "c.py", "--workdir", "w",
        path=bare_path,
    )
    assert bad_count.returncode == 2 and "--nodes must be a positive integer" in bad_count.stderr
    no_sbatch = run_script("slurm_gpu.sh", "--gpus-per-node", "8", "--config", "c.py", "--workdir", "w", path=bare_path)
    assert no_sbatch.returncode == 127 and "sbatch not found" in no_sbatch.stderr
