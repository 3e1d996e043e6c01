r"""CSQ on CIFAR-10 (protocol II: 10,000 test queries, 50,000 training images = database), from scratch.

Command (bits: 16, 32 or 64; default 64)::

    python -m jaxretrieval.train --config configs/csq_cifar10.py:bits=64 --workdir runs/csq_cifar10_64 \
        --config.data.root=/path/to/cifar10

Data: CIFAR-10 as image folders ``<root>/{train,test}/<class>/*.jpg``. Model: the small CNN (width
32) and CSQ's hash head, trained from scratch (the paper fine-tunes an ImageNet ResNet-50 / AlexNet at
224 px; no download here). Hardware / time: a 2-core CPU, roughly 1.3 to 2.6 hours for 15 epochs
(5,859 steps at about 1.6 CPU-seconds each, measured by the reproduction study, docs/results.md; not
yet run to the end); GPU time not measured yet. For a 20-minute CPU run use the study's ``cpu20``
budget (``python -m studies.reproduce``). Expected mAP@1000: well below the paper's AlexNet 0.79 at
64 bits (from-scratch small CNN at 32 px); see docs/results.md for measured numbers.
"""
from jaxretrieval.training.config import base_config, parse_bits


def get_config(arg=None):
    config = base_config("csq")
    config.data.source = "image_folder"
    config.data.protocol = "cifar10_II"
    config.model.num_bits = parse_bits(arg, config_name="csq_cifar10", default=64)
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 200
    config.batch_size = 128
    config.num_epochs = 15
    config.log_every_steps = 100
    config.checkpoint_every_steps = 1000
    config.eval.top_k = 1000
    config.eval.precision_at = 1000
    return config
