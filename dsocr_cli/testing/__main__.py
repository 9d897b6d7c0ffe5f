"""``python -m dsocr_cli.testing DIR``: write a random-weight checkpoint in the official hub layout."""

from __future__ import annotations

import argparse

import torch

from dsocr_cli.models.v1.layout import CheckpointSpec
from dsocr_cli.models.v2.layout import V2Spec
from dsocr_cli.testing.checkpoint import write_checkpoint
from dsocr_cli.testing.checkpoint_v2 import write_checkpoint_v2, write_converted_checkpoint_v2


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dsocr_cli.testing",
        description=(
            "Write a DeepSeek-OCR checkpoint with random weights (official hub layout; v2 also in transformers' "
            "converted one) for tests and benchmarks."
        ),
    )
    parser.add_argument("directory")
    parser.add_argument(
        "--family",
        choices=["v1", "v2"],
        default="v1",
        help="v1: deepseek-ai/DeepSeek-OCR; v2: deepseek-ai/DeepSeek-OCR-2 (default: v1)",
    )
    parser.add_argument(
        "--full-size",
        action="store_true",
        help="official sizes (v1: 3.3B parameters, 6.7 GB in bf16; v2: 3.4B parameters, 6.8 GB in bf16)",
    )
    parser.add_argument(
        "--layout",
        choices=["official", "converted"],
        default="official",
        help="v2 only: the official hub layout (deepseek-ai) or transformers' converted one (deepseek-community)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    if args.family == "v2":
        spec = V2Spec.official() if args.full_size else V2Spec.tiny()
        write = write_converted_checkpoint_v2 if args.layout == "converted" else write_checkpoint_v2
        path = write(args.directory, spec, seed=args.seed, dtype=dtype)
    else:
        if args.layout != "official":
            parser.error("--layout converted is for --family v2")
        v1_spec = CheckpointSpec.official() if args.full_size else CheckpointSpec.tiny()
        path = write_checkpoint(args.directory, v1_spec, seed=args.seed, dtype=dtype)
    print(path)


if __name__ == "__main__":
    main()
