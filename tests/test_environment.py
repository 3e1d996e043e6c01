"""The test environment itself: fake devices and a core that stays free of the training stack."""
import subprocess
import sys

import jax


def test_eight_fake_devices():
    """The root conftest must give every test 8 CPU devices (sharded == unsharded tests need them)."""
    assert jax.device_count() == 8


def test_core_imports_no_training_stack():
    """Importing the functional core must not import flax, optax, orbax, grain, TensorFlow or torch."""
    code = (
        "import sys, jaxretrieval.centers, jaxretrieval.losses, jaxretrieval.search, "
        "jaxretrieval.metrics, jaxretrieval.index\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flax', 'optax', 'orbax', 'grain', 'tensorflow', 'torch', 'tensorflow_datasets', 'chex'})\n"
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"core imported training-stack modules: {result.stdout}"
