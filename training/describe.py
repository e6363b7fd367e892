"""Size and cost of a model configuration: parameters and FLOPs per image, encoder and decoder.

python -m training.describe [checkpoint.pt]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from training.config import ModelConfig
from training.model import CVAE


def model_costs(config: ModelConfig) -> dict[str, float]:
    """Parameters and FLOPs (multiply-add = 2) for one image through encoder and decoder."""
    model = CVAE(config).eval()
    z, label = torch.zeros(1, config.latent_dim), torch.zeros(1, dtype=torch.int64)
    image = torch.zeros(1, 1, *config.image_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as decoder_flops:
        model.decoder(z, label)
    with torch.no_grad(), FlopCounterMode(display=False) as encoder_flops:
        model.encoder(image, label)
    return {
        "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()),
        "encoder_parameters": sum(p.numel() for p in model.encoder.parameters()),
        "decoder_mflops_per_image": decoder_flops.get_total_flops() / 1e6,
        "encoder_mflops_per_image": encoder_flops.get_total_flops() / 1e6,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="describe this checkpoint's model")
    args = parser.parse_args(argv)
    if args.checkpoint:
        from training.checkpoint import load_checkpoint

        config = load_checkpoint(args.checkpoint)[1].model
    else:
        config = ModelConfig()
    for key, value in model_costs(config).items():
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        sys.stdout.write(f"{key}: {shown}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
