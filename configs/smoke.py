r"""Smoke test: CSQ on the bundled digits with a tiny CNN, a few steps (tests and the multi-host test).

Command::

    python -m jaxretrieval.train --config configs/smoke.py --workdir /tmp/smoke

Hardware: any CPU (the test suite runs it on 8 fake CPU devices). Wall time: about 10 s, most of it
compilation. Expected mAP: not meaningful (a handful of steps); it checks that everything runs.
"""
from jaxretrieval.training.config import base_config


def get_config(arg=None):
    del arg
    config = base_config("csq")
    config.augment.crop_padding = 1
    config.model.in_channels = 1
    config.model.width = 4
    config.model.num_bits = 16
    config.model.hidden_dim = 32
    config.batch_size = 32
    config.num_steps = 6
    config.log_every_steps = 2
    config.checkpoint_every_steps = 3
    config.eval.top_k = 100
    config.eval.precision_at = 10
    return config
