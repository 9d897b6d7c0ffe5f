"""``python -m dsocr_cli.testing DIR``: write a random-weight checkpoint in the official hub layout."""

from __future__ import annotations

import argparse

import torch

from dsocr_cli.models.v1.layout import CheckpointSpec
from dsocr_cli.testing.checkpoint import write_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dsocr_cli.testing",
        description="Write a DeepSeek-OCR v1 checkpoint with random weights (official layout) for tests and benchmarks.",
    )
    parser.add_argument("directory")
    parser.add_argument("--full-size", action="store_true", help="official sizes (3.3B parameters, 6.7 GB in bf16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    args = parser.parse_args()
    spec = CheckpointSpec.official() if args.full_size else CheckpointSpec.tiny()
    path = write_checkpoint(args.directory, spec, seed=args.seed, dtype=getattr(torch, args.dtype))
    print(path)


if __name__ == "__main__":
    main()
