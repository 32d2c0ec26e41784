"""The rows of the paper's Tables 1-4, transcribed from the paper text.

Source: ``/work/shared/paper/000_b90ac5043463f695.txt`` (PDF extraction; Table 1
around line 312, Table 2 around 324, Table 3 around 428, Table 4 around 621).
Each row is kept as the paper prints it: the value string below is copied
verbatim, ``-`` stays empty (NaN), and rows that the paper prints in percent
(``percent=True``) have their Dice divided by 100 so every Dice is a fraction.
HD95 values are never rescaled. The printed text of every value is kept too
(``<metric>_printed``), so tables show it with the source's own digits: 0.89
stays 0.89, the ``5`` of row [32] stays 5, and a percent Dice 90.24 is shown as
0.9024 (the decimal point moved, nothing rounded or padded). Reference numbers are the paper's bracketed
citation numbers; years are the publication years of Table 1 (Tables 2 and 3
print no year, and the paper's reference list is cut off after [7] in the text,
so their year stays empty).

Transcription notes (where the extraction garbles the page):
- Table 1, [35] prints the same HD95 23.439 for TC and ET; [32] prints an ET
  HD95 of ``5``. Both are kept as printed.
- Table 3's caption says "BraTS 2029": a typo for 2019 (the text says "tested
  on BraTS 2018 and 2019, which is shown in Table 2 and 3").
- Table 4's row names lose their first letter in the extraction
  ("Paseline", "roposed", "D-Unet"); rows are matched to the ablation variants
  by position (the ``table4_row`` of :data:`nnunetv2_druwas.variants.VARIANTS`).
- The paper's own rows are source ``paper``; Table 1's two rows are the ReLU
  (``full``) and ReLU + Swish (``swish``) variants, the same numbers as Table 4
  rows 6 and 7. Tables 2 and 3 print one "3D-DRUwAS (ours)" row without saying
  which activation; its ``variant`` stays empty.
"""
from __future__ import annotations

from decimal import Decimal

import pandas as pd

from nnunetv2_druwas.variants import VARIANTS

METRIC_COLUMNS = ("dice_wt", "dice_tc", "dice_et", "hd95_wt", "hd95_tc", "hd95_et")

# The BraTS release each table compares on.
TABLE_YEARS = {1: 2020, 2: 2018, 3: 2019, 4: 2020}

# (method, reference, year, "Dice WT TC ET  HD95 WT TC ET" as printed, printed in percent)
_TABLE1 = (
    ("Dual-Path attention U-Net", 22, 2021, "0.8780 0.7790 0.7520 6.3000 11.0200 30.6500", False),
    ("3D self-ensemble ResUNet", 23, 2021, "0.89 0.81 0.76 5.28 7.74 33.26", False),
    ("modified 3D U-net", 24, 2021, "0.90 0.84 0.74 5.08 8.69 36.04", False),
    ("TransBTS", 25, 2021, "0.8900 0.8136 0.7850 6.4690 10.4680 16.7160", False),
    ("MENet", 26, 2021, "0.8800 0.7400 0.7000 6.9500 30.1800 38.6000", False),
    ("ensembles of CNN", 27, 2021, "0.90 0.81 0.77 6.16 7.55 21.80", False),
    ("Swinbts", 28, 2022, "0.8906 0.8030 0.7736 8.56 15.78 26.84", False),
    ("3D PSwinbts", 29, 2022, "0.9076 0.8420 0.7948 5.573 7.252 19.437", False),
    ("SwinUnet", 30, 2023, "0.8934 0.7760 0.7895 7.855 14.5940 11.0050", False),
    ("Pre-operative three-dimensional MRI", 31, 2023, "0.88 0.79 0.77 7.79 13.86 32.69", False),
    ("A deep CNN model for glioma tumor segmentation", 32, 2023, "0.85 0.90 0.74 6.33 5.75 5", False),
    ("HMNet", 33, 2023, "0.901 0.823 0.781 5.954 7.055 21.340", False),
    ("Selective Deeply Supervised Multi-Scale Attention Network", 34, 2023,
     "90.24 86.93 80.64 4.27 6.32 5.87", True),
    ("Self-supervised hybrid fusion network", 35, 2023, "86.84 74.12 73.49 6.416 23.439 23.439", True),
    ("Segmentation via pixel-level and feature-level image fusion", 36, 2023,
     "0.8950 0.8178 0.7745 5.3117 9.4285 4.4715", False),
    ("Large Kernel Attention", 37, 2023, "90.68 84.82 78.94 3.65 5.02 25.22", True),
    ("dResU-Net", 38, 2023, "0.8660 0.8357 0.8004 - - -", False),
    ("Multimodal Transformer of Incomplete MRI Data", 39, 2023, "90.64 87.41 81.55 5.65 6.70 5.83", True),
    ("MM-UNet", 40, 2023, "0.850 0.765 0.762 8.243 10.766 6.389", False),
)
_TABLE2 = (
    ("3D U-Net with Augmentation", 41, None, "0.873 0.783 0.751 5.90 8.03 4.53", False),
    ("Context Aware 3D UNet", 42, None, "0.872 0.795 0.741 5.04 9.59 5.58", False),
    ("MCCNN and CRFs", 43, None, "0.8824 0.7481 0.7178 12.6069 9.6223 5.6864", False),
    ("ResU-Net", 15, None, "0.870 0.802 0.760 - - -", False),
    ("AG-ResUNet", 15, None, "0.872 0.808 0.772 - - -", False),
    ("Attention-aware fusion", 44, None, "0.861 0.871 0.789 6.2 5.2 3.1", False),
)
_TABLE3 = (
    ("dual supervision guided attentional network", 46, None, "0.882 0.771 0.727 8.09 10.3 6.6", False),
    ("heuristic approach for segmentation", 47, None, "0.8598 0.7728 0.7153 - - -", False),
    ("RAAGR2-Net", 48, None, "0.884 0.814 0.763 - - -", False),
    ("Swinbts", 28, None, "0.8975 0.7928 0.7443 - - -", False),
    ("Cascaded 3D U-Net and 3D U-Net++", 49, None, "0.867 0.834 0.802 - - -", False),
    ("Multiscale lightweight 3D segmentation with attention mechanism", 50, None,
     "0.8994 0.8349 0.7791 5.45 6.56 4.03", False),
)
# The paper's own rows: (table, method, variant key or None, year, values)
_PAPER = (
    (1, "3D-DRUwAS (ReLU)", "full", 2023, "0.9096 0.8869 0.8385 1.5853 2.5981 2.6794"),
    (1, "3D-DRUwAS (ReLU + Swish)", "swish", 2023, "0.9115 0.9137 0.8584 1.4195 1.9541 2.2840"),
    (2, "3D-DRUwAS", None, None, "0.8968 0.8524 0.7968 2.6901 4.6084 5.0269"),
    (3, "3D-DRUwAS", None, None, "0.8939 0.8502 0.8117 2.0616 3.5858 4.3453"),
)
# Table 4 (ablation on BraTS 2020), in the order of its rows 1-7.
_TABLE4 = (
    "0.8489 0.7181 0.5915 3.2305 6.0357 18.084",
    "0.8380 0.7465 0.6793 3.4882 4.8240 8.1997",
    "0.8779 0.7710 0.7551 3.5241 3.7701 2.7929",
    "0.8693 0.8026 0.7792 3.7875 3.8907 2.9142",
    "0.8986 0.8586 0.7896 3.1693 2.5136 3.2973",
    "0.9096 0.8869 0.8385 1.5853 2.5981 2.6794",
    "0.9115 0.9137 0.8584 1.4195 1.9541 2.2840",
)

# What the paper's text (Section 5) quotes for its final model, differing from its tables.
TEXT_QUOTE = {"dice_wt": 0.9121, "dice_tc": 0.9121, "dice_et": 0.8583,
              "hd95_wt": 1.2261, "hd95_tc": 1.33527, "hd95_et": 1.6837}
INCONSISTENCY_NOTE = (
    "The paper's text quotes different numbers for its final model (Dice WT/TC/ET "
    + "/".join(f"{TEXT_QUOTE[c]:g}" for c in METRIC_COLUMNS[:3]) + ", HD95 "
    + "/".join(f"{TEXT_QUOTE[c]:g}" for c in METRIC_COLUMNS[3:])
    + ") than its Tables 1 and 4 (Dice 0.9115/0.9137/0.8584, HD95 1.4195/1.9541/2.2840); "
    "the tables are used here.")


def _values(printed: str, percent: bool) -> dict[str, float | str]:
    """The six values of a printed row (Dice as fractions) and their text as the source printed them."""
    texts = printed.split()
    if len(texts) != len(METRIC_COLUMNS):
        raise ValueError(f"expected {len(METRIC_COLUMNS)} values, got {printed!r}")
    if percent:   # move the decimal point of the Dice values, keeping exactly the printed digits
        texts[:3] = [v if v == "-" else format(Decimal(v).scaleb(-2), "f") for v in texts[:3]]
    numbers = [float("nan") if v == "-" else float(v) for v in texts]
    return {**dict(zip(METRIC_COLUMNS, numbers)),
            **{f"{c}_printed": None if v == "-" else v for c, v in zip(METRIC_COLUMNS, texts)}}


def published_rows() -> pd.DataFrame:
    """Every transcribed row of Tables 1-4 as one table.

    Columns: ``table`` (1-4), ``method``, ``source`` (``published`` for other
    groups' results, ``paper`` for the paper's own), ``reference`` (citation
    number or NaN), ``year`` (publication year or NaN), ``variant`` (ablation
    variant key of the paper's rows where known, else None), ``table4_row``,
    the six metric columns with Dice as fractions, then ``<metric>_printed``: each value's
    text as printed (percent Dice with the decimal point moved; None where the source prints ``-``).
    """
    rows = []
    for table, entries in ((1, _TABLE1), (2, _TABLE2), (3, _TABLE3)):
        for method, reference, year, printed, percent in entries:
            rows.append(dict(table=table, method=method, source="published", reference=reference, year=year,
                             variant=None, table4_row=None, **_values(printed, percent)))
    for table, method, variant, year, printed in _PAPER:
        rows.append(dict(table=table, method=method, source="paper", reference=None, year=year,
                         variant=variant, table4_row=None, **_values(printed, False)))
    by_row = {v.table4_row: v for v in VARIANTS}
    for row, printed in enumerate(_TABLE4, start=1):
        rows.append(dict(table=4, method=by_row[row].label, source="paper", reference=None, year=2023,
                         variant=by_row[row].key, table4_row=row, **_values(printed, False)))
    frame = pd.DataFrame(rows)
    for column in ("reference", "year", "table4_row"):
        frame[column] = frame[column].astype("Int64")
    return frame
