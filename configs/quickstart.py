r"""Quickstart: CSQ, 32 bits, on the bundled scikit-learn digits with a small CNN, on a laptop CPU.

Command (also ``make quickstart``)::

    python -m jaxretrieval.train --config configs/quickstart.py --workdir runs/quickstart

Data: scikit-learn's 1,797 real 8x8 digit images (bundled, offline); 500 queries (50 per class), the
other 1,297 images are the database and the training set. Hardware: a 2-core CPU. Wall time: under
3 minutes including compilation. Expected: mAP (whole database) >= 0.9 on the test queries; the
workdir gets metrics.jsonl, eval/metrics.json, eval/pr_curve.png and eval/retrieval_grid.png.
"""
from jaxretrieval.training.config import base_config


def get_config(arg=None):
    del arg
    config = base_config("csq")
    config.augment.crop_padding = 1
    config.augment.flip = False  # Digits are not mirror-symmetric.
    config.model.in_channels = 1
    config.model.width = 16
    config.model.hidden_dim = 256
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 50
    config.num_epochs = 30
    config.checkpoint_every_steps = 200
    return config
