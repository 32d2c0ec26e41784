"""``nnunetv2_druwas trainers``: every DRUwAS trainer name and what it trains (from the variant table)."""
from __future__ import annotations

import argparse

from nnunetv2_druwas.variants import REPEAT_SUFFIX, all_trainers, continued_trainer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--names-only", action="store_true", help="print trainer names only, one per line")


def run(args: argparse.Namespace) -> int:
    for name, (v, recipe) in all_trainers().items():
        if args.names_only:
            print(name)
            continue
        if v.network == "plan":
            row, network = "reference", "nnU-Net's network from the plans (-p)"
        else:
            row = f"Table 4 row {v.table4_row}"
            network = v.nonlin + "; switches: " + (", ".join(
                s for s, on in (("residual", v.residual), ("attention gate", v.attention_gate),
                                ("spatial attention", v.spatial_attention)) if on) or "none")
        extra = f"; continues {continued_trainer(name)}" if v.continues else ""
        print(f"{name:<48} {row}: {v.label} [{recipe} recipe; {network}{extra}]")
    if not args.names_only:
        print(f"\nRepeat k >= 1 of any of these (and of any nnU-Net trainer, e.g. nnUNetTrainer{REPEAT_SUFFIX}1) is "
              f"the trainer <name>{REPEAT_SUFFIX}<k>, seeded with DRUWAS_SEED + k (plain names: repeat 0).")
    return 0
