"""Convert a local torchvision ResNet state dict into jaxretrieval backbone weights (no download).

    python scripts/convert_torchvision_resnet.py --input resnet50.pth --output resnet50.npz

The input is a file written by ``torch.save(model.state_dict(), path)`` (or a checkpoint dict holding
it under ``"state_dict"``), e.g. torchvision's ``resnet50-11ad3fa6.pth`` fetched once by hand. The
output (``.npz``, or ``.safetensors`` when that package is installed) is keyed by our backbone's
parameter paths with conv kernels in HWIO; point ``config.model.pretrained_path`` at it. The
classifier (``fc``) is dropped. torch is needed only here, never by the library.
"""

from __future__ import annotations

import argparse
import sys

from jaxretrieval.models.pretrained import convert_torchvision_resnet, save_weights


def _read_torch_state_dict(path: str) -> dict:
    import torch  # only this script needs torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(f"{path!r} holds no state dict (expected a mapping of parameter names to tensors)")
    return {name: tensor.detach().cpu().numpy() for name, tensor in state_dict.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="torch state dict (.pth / .pt)")
    parser.add_argument("--output", required=True, help="converted weights (.npz or .safetensors)")
    args = parser.parse_args(argv)
    weights = convert_torchvision_resnet(_read_torch_state_dict(args.input))
    save_weights(weights, args.output)
    num_values = sum(value.size for value in weights.values())
    print(f"wrote {len(weights)} arrays ({num_values:,} values) to {args.output}")


if __name__ == "__main__":
    sys.exit(main())
