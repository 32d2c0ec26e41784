"""The ``nnunetv2_druwas`` command: one entry point, one subcommand per concern.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; this file only lists them.
Modules keep heavy imports (torch, nnU-Net) inside their functions.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from nnunetv2_druwas.errors import report_errors

# (subcommand, module, one-line help)
COMMANDS = [
    ("synth", "nnunetv2_druwas.data.synth", "write a synthetic BraTS-like release in any release's layout"),
    ("convert-brats", "nnunetv2_druwas.data.convert",
     "convert a BraTS 2018-2021 or 2023 (GLI) release or the Decathlon's Task01_BrainTumour to nnU-Net"),
    ("export-brats", "nnunetv2_druwas.data.export", "turn nnU-Net predictions back into the release's labels"),
    ("postprocess", "nnunetv2_druwas.evaluation.postprocess",
     "choose a run's BraTS postprocessing threshold (nnU-Net's BraTS 2020 entry) on its cross-validation"),
    ("evaluate", "nnunetv2_druwas.evaluation.evaluate",
     "Dice and HD95 per case and region under an evaluation protocol (brats, eq2, authors, lesionwise)"),
    ("evaluate-results", "nnunetv2_druwas.evaluation.results",
     "score every trained fold of a results tree that lacks its metrics (nnU-Net's own trainers too)"),
    ("env", "nnunetv2_druwas.env", "print the environment nnU-Net needs to find the DRUwAS trainers"),
    ("trainers", "nnunetv2_druwas.listing", "list every DRUwAS trainer and what it trains"),
    ("tables", "analysis.tables", "the paper's Tables 1-4, statistics and plots from a results folder"),
    ("grid", "nnunetv2_druwas.grid", "the experiment grid as SLURM job arrays or a shell script"),
    ("demo", "nnunetv2_druwas.demo", "run the whole harness end to end on synthetic data (CPU)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnunetv2_druwas",
        description="3D-DRUwAS and its ablations for nnU-Net v2: BraTS conversion, evaluation, tables, demo. "
                    "Training and prediction stay nnU-Net's own commands (nnUNetv2_train -tr nnUNetTrainerDRUwAS).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(lambda: args._run(args))

if __name__ == "__main__":
    sys.exit(main())
