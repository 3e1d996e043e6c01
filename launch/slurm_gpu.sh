#!/usr/bin/env bash
# Train jaxretrieval on a Slurm GPU cluster: one JAX process per GPU, started by srun.
#
#   launch/slurm_gpu.sh --nodes 2 --gpus-per-node 8 --config configs/mapq_cifar10.py \
#       --workdir /shared/runs/mapq [--partition P] [--account A] [--time 24:00:00] \
#       [--cpus-per-task 8] [--python .venv/bin/python] [--dry-run] \
#       -- --config.data.root=/data/cifar10 [--config.batch_size=4096 --config.micro_batch_size=256]
#
# Writes a batch script and submits it with sbatch. Each task runs jaxretrieval.train with
# --jax_distributed=on: JAX takes the coordinator (first node of the step, a port derived from the job
# id), the process count (SLURM_NTASKS), the process id (SLURM_PROCID) and the task's GPU
# (SLURM_LOCALID) from the Slurm environment. The workdir must be on a file system all nodes share.
# Arguments after "--" are passed to jaxretrieval.train.
# --dry-run prints the batch script and the sbatch command, and submits nothing.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

nodes=1 gpus_per_node="" cpus_per_task=8 time_limit="24:00:00" partition="" account=""
config="" workdir="" python_bin=".venv/bin/python" job_name="jaxretrieval" dry_run=0
train_args=()
while (($#)); do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --gpus-per-node) gpus_per_node="$2"; shift 2 ;;
    --cpus-per-task) cpus_per_task="$2"; shift 2 ;;
    --time) time_limit="$2"; shift 2 ;;
    --partition) partition="$2"; shift 2 ;;
    --account) account="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --python) python_bin="$2"; shift 2 ;;
    --job-name) job_name="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; train_args=("$@"); break ;;
    *) echo "slurm_gpu.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for required in gpus_per_node config workdir; do
  if [[ -z "${!required}" ]]; then
    echo "slurm_gpu.sh: --${required//_/-} is required (see --help)" >&2
    exit 2
  fi
done
for count in nodes gpus_per_node cpus_per_task; do
  if ! [[ "${!count}" =~ ^[1-9][0-9]*$ ]]; then
    echo "slurm_gpu.sh: --${count//_/-} must be a positive integer, got '${!count}'" >&2
    exit 2
  fi
done
if ((!dry_run)) && ! command -v sbatch >/dev/null; then
  echo "slurm_gpu.sh: sbatch not found on PATH; run this on a Slurm login node or use --dry-run" >&2
  exit 127
fi

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
# Shell-quotes each argument (single quotes where needed) and joins them with spaces.
quote() {
  local quoted=() argument
  for argument in "$@"; do
    if [[ "$argument" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
      quoted+=("$argument")
    else
      quoted+=("'${argument//\'/\'\\\'\'}'")
    fi
  done
  echo "${quoted[*]}"
}

train_command="$(quote "$python_bin" -m jaxretrieval.train --config "$config" --workdir "$workdir" --jax_distributed=on)"
if ((${#train_args[@]})); then
  train_command+=" $(quote "${train_args[@]}")"
fi

batch_script="#!/bin/bash
#SBATCH --job-name=$job_name
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=$gpus_per_node
#SBATCH --gpus-per-node=$gpus_per_node
#SBATCH --cpus-per-task=$cpus_per_task
#SBATCH --time=$time_limit
#SBATCH --output=$job_name-%j.out${partition:+
#SBATCH --partition=$partition}${account:+
#SBATCH --account=$account}
# One process per GPU; every task sees the node's GPUs and JAX picks GPU \$SLURM_LOCALID.
set -euo pipefail
cd $(quote "$repo_root")
srun --kill-on-bad-exit=1 $train_command"

if ((dry_run)); then
  echo "$batch_script"
  echo "sbatch <the batch script above>"
else
  script_path="$(mktemp "${TMPDIR:-/tmp}/jaxretrieval-slurm.XXXXXX")"
  printf '%s\n' "$batch_script" >"$script_path"
  sbatch "$script_path"
fi
