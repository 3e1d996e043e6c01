r"""SPQ (self-supervised product quantization, no labels) on CIFAR-10, a CPU-sized run.

Command::

    python -m jaxretrieval.train --config configs/spq_cifar10.py --workdir runs/spq_cifar10 \
        --config.data.root=/path/to/cifar10

Data: CIFAR-10 image folders, protocol II (10,000 test queries, 50,000 training images = database,
labels used only for evaluation). Model: the small CNN with SPQ's quantization head (8 books x 16
words x 16 dims = 32 bits), SPQ's two-view augmentations, the official loss temperatures and Adam
3e-4 / weight decay 1e-5. Hardware / time: a 2-core CPU, roughly 1.9 to 3.7 hours for 10 epochs
(1,953 steps at about 6.9 CPU-seconds each, measured by the reproduction study; not yet run to the
end). Expected mAP@1000: far below the paper's 0.793 (ResNet-18, 2,000+ epochs on a GPU:
configs/spq_cifar10_paper.py).
"""
from jaxretrieval.training.config import base_config


def get_config(arg=None):
    del arg
    config = base_config("spq")
    config.data.source = "image_folder"
    config.data.protocol = "cifar10_II"
    config.optimizer.learning_rate = 3e-4
    config.optimizer.weight_decay = 1e-5
    config.schedule.name = "cosine"
    config.batch_size = 256
    config.num_epochs = 10
    config.eval.top_k = 1000
    config.eval.precision_at = 1000
    return config
