r"""mAP_Q paper recipe (Revaud et al., ICCV 2019): ResNet-101 + GeM + AP loss on Landmarks-clean.

Command::

    python -m jaxretrieval.train --config configs/mapq_landmarks_resnet101.py --workdir runs/mapq_landmarks \
        --config.data.root=/path/to/landmarks

Settings from the paper (naver/deep-image-retrieval ships the models and evaluation, not a training
script): ImageNet-pretrained ResNet-101 (``model.pretrained_path``, converted from torchvision with
``scripts/convert_torchvision_resnet.py``), GeM pooling (p = 3, trainable), FC to 2,048, L2; the
listwise AP loss with 20 bins on [-1, 1] over batches of 4,096 images, made possible by multistage
backprop (``micro_batch_size`` images at a time, BatchNorm frozen); Adam, learning rate 1e-5 with
weight decay 1e-6 and an exponential-style decay (here: cosine over the run); 800 px training crops
(here: images resized to 800 x 800, padded random crop + flip); PCA-whitening with power 0.25 learned
on the training descriptors after training. The optimiser constants are as reported in the paper's
text: check them against your copy before claiming a reproduction.
Data: Landmarks-clean (Gordo et al.; 586 landmarks) as DeepHash-style list files ``train.txt``,
``test.txt`` and ``database.txt`` in ``config.data.root`` (path + one-hot label vector). Our
evaluation reports mAP over that held-out split; Revisited Oxford / Paris
(``jaxretrieval.metrics.revisited_map``) needs its ground-truth files and is run separately.
Hardware: a GPU pod (the paper: 4,096 images of 800 px per update); one H100 needs about 1-2 s per
4,096-image step at 224 px and far longer at 800 px. Expected (paper, R101-AP-GeM with whitening):
ROxford medium / hard 67.1 / 42.3, RParis 80.3 / 60.9 mAP.
"""
from jaxretrieval.training.config import IMAGENET_MEAN, IMAGENET_STD, base_config


def get_config(arg=None):
    del arg
    config = base_config("map_q")
    config.data.source = "list_file"
    config.data.protocol = "list_files"
    config.data.image_size = 800
    config.data.worker_count = 16
    config.augment.crop_padding = 32
    config.augment.mean = IMAGENET_MEAN
    config.augment.std = IMAGENET_STD
    config.model.backbone = "resnet101"
    config.model.descriptor_dim = 2048
    config.model.pretrained_path = "pretrained/resnet101.npz"
    config.optimizer.learning_rate = 1e-5
    config.optimizer.weight_decay = 1e-6
    config.schedule.name = "cosine"
    config.batch_size = 4096
    config.micro_batch_size = 64
    config.eval_batch_size = 64
    config.num_steps = 2000
    config.log_every_steps = 10
    config.checkpoint_every_steps = 100
    config.eval.precision_at = 10
    return config
