r"""CSQ paper recipe on NUS-WIDE: ResNet-50 (ImageNet-pretrained), every hyperparameter of the official code.

Command (bits: 16, 32 or 64; default 64)::

    python -m jaxretrieval.train --config configs/csq_nuswide_resnet50.py:bits=64 --workdir runs/csq_nuswide_64 \\
        --config.data.root=/path/to/nuswide

Data: NUS-WIDE (21 most frequent labels, multi-label), as DeepHash list files ``train.txt``, ``test.txt`` and ``database.txt`` in
``config.data.root`` (one line per image: a path relative to the root, then the 0/1 label vector);
other list paths with ``--config.data.train_list=...``. Pretrained backbone: a torchvision ResNet-50
converted once with ``python scripts/convert_torchvision_resnet.py --input resnet50.pth --output
pretrained/resnet50.npz`` (never downloaded at run time).
Official settings (see :func:`jaxretrieval.training.config.csq_resnet50_recipe`): Adam 1e-3, backbone
lr x0.05 (``--multi_lr``), x0.7 every 10 epochs, 90 epochs, batch 64, lambda 0.05, mAP@5000 (``--R 5000``).
Hardware: one GPU (H100 class); wall time: several hours. Expected (paper, 16 / 32 / 64 bits): 0.810 / 0.825 / 0.839 mAP@5000.
"""
from jaxretrieval.training.config import csq_resnet50_recipe, parse_bits


def get_config(arg=None):
    return csq_resnet50_recipe(
        num_bits=parse_bits(arg, config_name="csq_nuswide_resnet50"),
        backbone_multiplier=0.05,
        top_k=5000,
    )
