"""BraTS-convention evaluation: Dice, HD95, sensitivity and specificity per case and region."""
from nnunetv2_druwas.evaluation.evaluate import evaluate_folder, summarize
from nnunetv2_druwas.evaluation.metrics import (BRATS_EMPTY_HD95, HD95_DEFINITIONS, LABEL_CONVENTIONS, dice,
                                                hd95, region_metrics, surface_distances, surfaces)

__all__ = ["evaluate_folder", "summarize", "dice", "hd95", "region_metrics", "surface_distances", "surfaces",
           "BRATS_EMPTY_HD95", "HD95_DEFINITIONS", "LABEL_CONVENTIONS"]
