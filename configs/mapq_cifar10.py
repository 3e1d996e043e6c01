r"""mAP_Q (listwise AP loss) on CIFAR-10, a CPU-sized run with real-valued descriptors.

Command::

    python -m jaxretrieval.train --config configs/mapq_cifar10.py --workdir runs/mapq_cifar10 \
        --config.data.root=/path/to/cifar10

Data: CIFAR-10 image folders, protocol II. Model: the small CNN with the AP head (GeM, p = 3
trainable, 128-dim L2-normalised descriptor); mAP_Q loss with 20 bins on [-1, 1] over the whole batch
of 512 (every other image of the batch ranked for every query). Multistage backprop is off here
(``micro_batch_size`` 0); set e.g. ``--config.micro_batch_size=128`` to bound activation memory at
large batches (BatchNorm is then frozen). PCA-whitening (power 0.25) is learned on the training
descriptors after training. Evaluation: cosine similarity, mAP@1000, plus the sign-binarised
descriptors' Hamming mAP. Hardware / time: a 2-core CPU, roughly 1.7 to 3.4 hours for 15 epochs
(1,464 steps at about 8.4 CPU-seconds each, measured by the reproduction study; not yet run to the
end). Expected mAP@1000: see docs/results.md (no paper number for this setting).
"""
from jaxretrieval.training.config import base_config


def get_config(arg=None):
    del arg
    config = base_config("map_q")
    config.data.source = "image_folder"
    config.data.protocol = "cifar10_II"
    config.schedule.name = "cosine"
    config.schedule.warmup_steps = 100
    config.batch_size = 512
    config.num_epochs = 15
    config.log_every_steps = 20
    config.eval.top_k = 1000
    config.eval.precision_at = 1000
    return config
