"""Root pytest configuration: runs before jax is imported anywhere (tests and doctests alike).

Eight fake CPU devices let every sharded code path be tested against its unsharded twin on one CPU.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
# Benchmarks and scripts are not part of the suite.
collect_ignore = ["benchmarks", "launch", "build", "runs", "configs"]
