"""Pretrained weights: torchvision state dict -> converter -> load_pretrained reproduces them."""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest
from flax import nnx

from jaxretrieval import models
from jaxretrieval.models import pretrained

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _thin_resnet50_model():
    """A ResNet-50 of base width 2 instead of 64 (torchvision's names and layout, tiny arrays) + a head."""
    rngs = nnx.Rngs(0)
    backbone = models.backbones.build_backbone("resnet50", in_channels=3, width=2, rngs=rngs)
    head = models.heads.HashHead(backbone.num_features, 4, hidden_dim=4, rngs=rngs)
    return models.RetrievalModel(backbone, head, in_channels=3)
_TORCH_BATCH_NORM_NAMES = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torchvision_name(path: tuple) -> str:
    """Our backbone path -> torchvision's state-dict name, written out independently of the converter."""
    *modules, leaf = [str(part) for part in path]
    modules = ["downsample.0" if m == "downsample_conv" else "downsample.1" if m == "downsample_bn" else m for m in modules]
    return ".".join([*modules, "weight" if leaf == "kernel" else _TORCH_BATCH_NORM_NAMES[leaf]])


def _fake_torchvision_state_dict(backbone, seed=0):
    """Random weights in torch layout (conv OIHW) under torchvision's names, plus what a real one has."""
    rng = np.random.default_rng(seed)
    state_dict = {}
    for path, variable in nnx.to_flat_state(nnx.state(backbone, nnx.Any(nnx.Param, nnx.BatchStat))):
        shape = variable.shape
        if path[-1] == "kernel":
            shape = (shape[3], shape[2], shape[0], shape[1])  # HWIO -> OIHW
        values = rng.standard_normal(shape).astype(np.float32)
        name = _torchvision_name(path)
        state_dict[name] = np.abs(values) + 0.5 if path[-1] == "var" else values
        if path[-1] == "var":  # torch BatchNorm's step counter, which the converter drops
            state_dict[name.replace("running_var", "num_batches_tracked")] = np.array(7, np.int64)
    state_dict["fc.weight"] = rng.standard_normal((1000, backbone.num_features)).astype(np.float32)
    state_dict["fc.bias"] = np.zeros(1000, np.float32)
    return state_dict


def _expected_weights(state_dict, backbone):
    """What the backbone should hold after loading: torch arrays back in our layout."""
    expected = {}
    for path, _ in nnx.to_flat_state(nnx.state(backbone, nnx.Any(nnx.Param, nnx.BatchStat))):
        value = state_dict[_torchvision_name(path)]
        expected[pretrained.path_key(path)] = np.transpose(value, (2, 3, 1, 0)) if path[-1] == "kernel" else value
    return expected


@pytest.fixture(scope="module")
def thin_model(concrete_module):
    """One concrete thin ResNet-50 model for the module: every load overwrites all backbone weights."""
    return concrete_module(_thin_resnet50_model)


@pytest.fixture(scope="module")
def torch_state_dict(thin_model):
    return _fake_torchvision_state_dict(thin_model.backbone)


def test_convert_then_load_reproduces_the_torchvision_weights(tmp_path, thin_model, torch_state_dict):
    weights_path = tmp_path / "resnet50.npz"
    pretrained.save_weights(pretrained.convert_torchvision_resnet(torch_state_dict), weights_path)
    model = thin_model
    head_before = {key: value.copy() for key, value in pretrained.flat_weights(model.head).items()}
    models.load_pretrained(model, weights_path)
    loaded = pretrained.flat_weights(model.backbone)
    expected = _expected_weights(torch_state_dict, thin_model.backbone)
    assert loaded.keys() == expected.keys()
    for key in expected:
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)
    for key, value in pretrained.flat_weights(model.head).items():  # the head is not touched
        np.testing.assert_array_equal(value, head_before[key], err_msg=key)


def test_converted_weights_give_torchvision_outputs(thin_model, torch_state_dict, tmp_path):
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    weights = {name: torch.from_numpy(np.asarray(value)) for name, value in torch_state_dict.items()}

    def batch_norm(prefix, x):
        return functional.batch_norm(
            x, weights[f"{prefix}.running_mean"], weights[f"{prefix}.running_var"], weights[f"{prefix}.weight"],
            weights[f"{prefix}.bias"], training=False, eps=1e-5,
        )

    def torchvision_bottleneck(x, prefix, stride):  # torchvision's Bottleneck.forward, written functionally
        out = functional.relu(batch_norm(f"{prefix}.bn1", functional.conv2d(x, weights[f"{prefix}.conv1.weight"])))
        out = functional.conv2d(out, weights[f"{prefix}.conv2.weight"], stride=stride, padding=1)
        out = batch_norm(f"{prefix}.bn3", functional.conv2d(functional.relu(batch_norm(f"{prefix}.bn2", out)), weights[f"{prefix}.conv3.weight"]))
        shortcut = batch_norm(f"{prefix}.downsample.1", functional.conv2d(x, weights[f"{prefix}.downsample.0.weight"], stride=stride))
        return functional.relu(out + shortcut)

    def torchvision_features(x):  # stem, then the first block of layer1 and of layer2 (stride 2)
        x = functional.conv2d(x, weights["conv1.weight"], stride=2, padding=3)
        x = functional.max_pool2d(functional.relu(batch_norm("bn1", x)), 3, 2, 1)
        return torchvision_bottleneck(torchvision_bottleneck(x, "layer1.0", 1), "layer2.0", 2)

    weights_path = tmp_path / "resnet50.npz"
    pretrained.save_weights(pretrained.convert_torchvision_resnet(torch_state_dict), weights_path)
    model = thin_model
    models.load_pretrained(model, weights_path)
    model.eval()
    # 36 px: 18 after the stem conv, 9 after the max-pool (odd), 5 after layer2's stride: even and odd
    # sizes under strided convolutions and pooling, where "SAME" padding would differ from torch's.
    images = np.random.default_rng(1).standard_normal((2, 36, 36, 3)).astype(np.float32)
    backbone = model.backbone
    ours = nnx.jit(lambda backbone, x: backbone.layer2[0](backbone.layer1[0](backbone.stem(x))))(backbone, images)
    with torch.no_grad():
        reference = torchvision_features(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    assert reference.shape == (2, 4 * 2 * 2, 5, 5)
    np.testing.assert_allclose(np.asarray(ours), reference.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def _load_converter_script():
    spec = importlib.util.spec_from_file_location("convert_torchvision_resnet", REPO_ROOT / "scripts" / "convert_torchvision_resnet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_converter_script_reads_a_torch_checkpoint(tmp_path, thin_model, capsys):
    torch = pytest.importorskip("torch")
    # Its own draws (seed 1): the shared model may already hold the seed-0 weights.
    torch_state_dict = _fake_torchvision_state_dict(thin_model.backbone, seed=1)
    checkpoint_path = tmp_path / "resnet50.pth"
    # A DataParallel checkpoint: nested under "state_dict" with "module." prefixes.
    torch.save(
        {"state_dict": {f"module.{name}": torch.from_numpy(np.asarray(value)) for name, value in torch_state_dict.items()}},
        checkpoint_path,
    )
    output_path = tmp_path / "converted.npz"
    _load_converter_script().main(["--input", str(checkpoint_path), "--output", str(output_path)])
    assert "wrote" in capsys.readouterr().out
    model = thin_model
    models.load_pretrained(model, output_path)
    loaded, expected = pretrained.flat_weights(model.backbone), _expected_weights(torch_state_dict, thin_model.backbone)
    for key in expected:
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)


def test_mismatched_weights_list_missing_unexpected_and_mis_shaped_keys(tmp_path, thin_model, torch_state_dict):
    weights = pretrained.convert_torchvision_resnet(torch_state_dict)
    del weights["layer1/0/conv1/kernel"]
    weights["layer9/0/conv1/kernel"] = np.zeros((1, 1, 1, 1), np.float32)
    weights["bn1/scale"] = np.zeros(3, np.float32)
    path = tmp_path / "bad.npz"
    pretrained.save_weights(weights, path)
    model = thin_model
    with pytest.raises(ValueError) as error:
        models.load_pretrained(model, path)
    message = str(error.value)
    assert "1 missing: layer1/0/conv1/kernel" in message
    assert "1 unexpected: layer9/0/conv1/kernel" in message
    assert "1 mis-shaped: bn1/scale: file (3,), model (2,)" in message
    assert str(path) in message


def test_missing_file_and_bad_suffix_are_clear_errors(tmp_path, thin_model):
    model = thin_model
    with pytest.raises(FileNotFoundError, match="pretrained weight file not found: .*nowhere.npz"):
        models.load_pretrained(model, tmp_path / "nowhere.npz")
    (tmp_path / "weights.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"must end in \.npz or \.safetensors"):
        models.load_pretrained(model, tmp_path / "weights.pth")


def test_safetensors_round_trip(tmp_path, torch_state_dict):
    pytest.importorskip("safetensors")
    weights = pretrained.convert_torchvision_resnet(torch_state_dict)
    pretrained.save_weights(weights, tmp_path / "weights.safetensors")
    read = pretrained.read_weights(tmp_path / "weights.safetensors")
    assert read.keys() == weights.keys()
    for key in weights:
        np.testing.assert_array_equal(read[key], weights[key])
