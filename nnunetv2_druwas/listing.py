"""``nnunetv2_druwas trainers``: every DRUwAS trainer name and what it trains (from the variant table)."""
from __future__ import annotations

import argparse

from nnunetv2_druwas.variants import all_trainers, trainer_name, variant_by_key


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--names-only", action="store_true", help="print trainer names only, one per line")


def run(args: argparse.Namespace) -> int:
    for name, (v, recipe) in all_trainers().items():
        if args.names_only:
            print(name)
            continue
        switches = ", ".join(s for s, on in (("residual", v.residual), ("attention gate", v.attention_gate),
                                             ("spatial attention", v.spatial_attention)) if on) or "none"
        extra = f"; continues {trainer_name(variant_by_key(v.continues), recipe)}" if v.continues else ""
        print(f"{name:<48} Table 4 row {v.table4_row}: {v.label} [{recipe} recipe; {v.nonlin}; "
              f"switches: {switches}{extra}]")
    return 0
