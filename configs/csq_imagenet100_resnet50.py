r"""CSQ paper recipe on ImageNet-100: ResNet-50 (ImageNet-pretrained), every hyperparameter of the official code.

Command (bits: 16, 32 or 64; default 64)::

    python -m jaxretrieval.train --config configs/csq_imagenet100_resnet50.py:bits=64 --workdir runs/csq_imagenet100_64 \\
        --config.data.root=/path/to/imagenet100

Data: ImageNet-100 (100 classes), as DeepHash list files ``train.txt``, ``test.txt`` and ``database.txt`` in
``config.data.root`` (one line per image: a path relative to the root, then the 0/1 label vector);
other list paths with ``--config.data.train_list=...``. Pretrained backbone: a torchvision ResNet-50
converted once with ``python scripts/convert_torchvision_resnet.py --input resnet50.pth --output
pretrained/resnet50.npz`` (never downloaded at run time).
Official settings (see :func:`jaxretrieval.training.config.csq_resnet50_recipe`): Adam 1e-3, backbone
lr x0.01 (``--multi_lr``), x0.7 every 10 epochs, 90 epochs, batch 64, lambda 0.05, mAP@1000 (``--R 1000``).
Hardware: one GPU (H100 class); wall time: several hours. Expected (paper, 16 / 32 / 64 bits): 0.851 / 0.865 / 0.873 mAP@1000.
"""
from jaxretrieval.training.config import csq_resnet50_recipe, parse_bits


def get_config(arg=None):
    return csq_resnet50_recipe(
        num_bits=parse_bits(arg, config_name="csq_imagenet100_resnet50"),
        backbone_multiplier=0.01,
        top_k=1000,
    )
