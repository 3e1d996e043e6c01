#!/usr/bin/env bash
# Train jaxretrieval on a Cloud TPU VM pod slice: copy this checkout to every worker, install, run.
#
#   launch/tpu_pod.sh --name my-v4-32 --zone us-central2-b --config configs/mapq_cifar10.py \
#       --workdir gs://my-bucket/runs/mapq [--project P] [--skip-copy] [--skip-install] [--dry-run] \
#       -- --config.data.root=/data/cifar10 [--config.batch_size=4096 --config.micro_batch_size=256]
#
# Every worker runs the same command (gcloud ... ssh --worker=all); each becomes one JAX process
# (--jax_distributed=on: JAX reads the slice's coordinator, process count and id from the TPU metadata
# server). The workdir must be storage that all workers share (a gs:// bucket): orbax writes each
# checkpoint collectively from all hosts. Arguments after "--" are passed to jaxretrieval.train.
# --dry-run prints the exact commands (one per line, shell-quoted) and runs nothing.
set -euo pipefail

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

name="" zone="" project="" config="" workdir=""
remote_dir="jaxretrieval" dry_run=0 copy=1 install=1
train_args=()
while (($#)); do
  case "$1" in
    --name) name="$2"; shift 2 ;;
    --zone) zone="$2"; shift 2 ;;
    --project) project="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --workdir) workdir="$2"; shift 2 ;;
    --remote-dir) remote_dir="$2"; shift 2 ;;
    --skip-copy) copy=0; shift ;;
    --skip-install) install=0; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; train_args=("$@"); break ;;
    *) echo "tpu_pod.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
for required in name zone config workdir; do
  if [[ -z "${!required}" ]]; then
    echo "tpu_pod.sh: --${required} is required (see --help)" >&2
    exit 2
  fi
done
if ((!dry_run)) && ! command -v gcloud >/dev/null; then
  echo "tpu_pod.sh: gcloud not found on PATH; install the Google Cloud CLI or use --dry-run" >&2
  exit 127
fi

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
target=(--zone "$zone")
[[ -n "$project" ]] && target+=(--project "$project")

run() {
  if ((dry_run)); then
    quote "$@"
  else
    "$@"
  fi
}

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

if ((copy)); then
  # Source only (no virtual environment, runs or caches).
  archive="/tmp/jaxretrieval-src.tar.gz"
  run tar -C "$repo_root" --exclude=.venv --exclude=runs --exclude=.git --exclude='*.egg-info' \
    --exclude=__pycache__ -czf "$archive" .
  run gcloud compute tpus tpu-vm scp "$archive" "$name:$archive" --worker=all "${target[@]}"
  run gcloud compute tpus tpu-vm ssh "$name" --worker=all "${target[@]}" \
    --command "mkdir -p $(quote "$remote_dir") && tar -C $(quote "$remote_dir") -xzf $(quote "$archive")"
fi
if ((install)); then
  run gcloud compute tpus tpu-vm ssh "$name" --worker=all "${target[@]}" \
    --command "cd $(quote "$remote_dir") && python3 -m venv .venv && .venv/bin/pip install --quiet -e '.[train]' 'jax[tpu]'"
fi
train_command="cd $(quote "$remote_dir") && .venv/bin/python -m jaxretrieval.train --config $(quote "$config") --workdir $(quote "$workdir") --jax_distributed=on"
if ((${#train_args[@]})); then
  train_command+=" $(quote "${train_args[@]}")"
fi
run gcloud compute tpus tpu-vm ssh "$name" --worker=all "${target[@]}" --command "$train_command"
