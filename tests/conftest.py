"""Shared fixtures: the real CIFAR-10 in ../shared, hypothesis settings, the device count."""
import os
import pathlib

import jax
import pytest

try:
    import hypothesis

    hypothesis.settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
    hypothesis.settings.load_profile("ci")
except ImportError:  # hypothesis is part of the [test] extra; tolerate running without it.
    pass

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_ROOT = REPO_ROOT.parent / "shared"


def _require_shared() -> bool:
    return os.environ.get("JAXRETRIEVAL_REQUIRE_SHARED", "") == "1"


@pytest.fixture(scope="session")
def shared_root() -> pathlib.Path:
    """``../shared`` beside the checkout; fails (not skips) under JAXRETRIEVAL_REQUIRE_SHARED=1."""
    if not SHARED_ROOT.is_dir():
        message = f"shared data not found at {SHARED_ROOT}"
        if _require_shared():
            pytest.fail(message + " (JAXRETRIEVAL_REQUIRE_SHARED=1)")
        pytest.skip(message)
    return SHARED_ROOT


@pytest.fixture(scope="session")
def cifar10_root(shared_root) -> pathlib.Path:
    root = shared_root / "data" / "cifar10"
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        pytest.fail(f"{root} exists but lacks train/ and test/")
    return root


@pytest.fixture(scope="session")
def reference_vectors(shared_root) -> dict:
    import json

    return json.loads((shared_root / "reference" / "vectors.json").read_text())

