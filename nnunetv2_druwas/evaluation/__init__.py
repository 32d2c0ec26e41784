"""BraTS-convention evaluation: Dice, HD95, sensitivity and specificity per case and region.

The names below are loaded on first use, so that importing a small submodule (for example
:mod:`nnunetv2_druwas.evaluation.protocols`, which the trainers read) does not load the
evaluation itself.
"""
import importlib

_EXPORTS = {
    "evaluate_folder": "evaluate", "summarize": "evaluate",
    "dice": "metrics", "hd95": "metrics", "region_metrics": "metrics", "surface_distances": "metrics",
    "surfaces": "metrics", "BRATS_EMPTY_HD95": "metrics", "HD95_DEFINITIONS": "metrics",
    "LABEL_CONVENTIONS": "metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
