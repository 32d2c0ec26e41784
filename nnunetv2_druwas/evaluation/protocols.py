"""The evaluation protocols: one row each, the names every part of the harness uses.

The same predictions score differently under different rules (full volume or a crop, surface voxels
or all voxels, mm or voxels, empty-mask values, lesion-wise matching), and the paper does not say
which rules its numbers follow. The protocol is therefore an explicit axis: ``nnunetv2_druwas
evaluate --protocol NAME``, one per-fold file per protocol (:func:`metrics_file_name`; the ``brats``
one is ``brats_metrics.csv``), a ``protocol`` column in every per-case CSV, and
``python -m analysis.tables --protocol NAME``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Args:
        name: the name on the command line and in file names.
        description: what it does, in one line.
        hd95_unit: the unit of its ``hd95`` column (``mm`` or ``voxels``).
        source: where its rules come from.
    """
    name: str
    description: str
    hd95_unit: str
    source: str


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("brats", "BraTS 2018-2020: full volume, surface voxels, pooled 95th percentile in mm (medpy's hd95); "
             "exactly one mask empty: Dice 0, HD95 373.13", "mm", "the BraTS 2018-2020 evaluation (medpy)"),
    Protocol("eq2", "the paper's Eq. 2: full volume, surface voxels, the larger of the two directed 95th "
             "percentiles in mm (MONAI's compute_hausdorff_distance); empty masks as brats", "mm",
             "the paper's Eq. 2; MONAI"),
    Protocol("authors", "the authors' code (ADRUwAMS): both maps shifted to centre the reference's centre of mass, "
             "cropped to 128^3, Dice with +1e-9, HD95 over all foreground voxels in voxels", "voxels",
             "myaghoubisuraki/ADRUwAMS: DataLoaders.py, Evaluations.py, Metrics.py"),
    Protocol("lesionwise", "the official BraTS 2023+ evaluation (brats-evaluation 0.0.10, gli): lesion-wise mean "
             "Dice / NSD / HD95 over matched lesions, global values, lesion TP/FP/FN", "mm",
             "brats-evaluation 0.0.10 (panoptica)"),
)}
DEFAULT_PROTOCOL = "brats"
#: Further protocols the DRUwAS trainers write at the end of training (:func:`fold_protocols`).
PROTOCOLS_VARIABLE = "DRUWAS_PROTOCOLS"


def metrics_file_name(protocol: str = DEFAULT_PROTOCOL) -> str:
    """The per-fold metrics file of ``protocol`` (``brats_metrics.csv`` for ``brats``).

    Args:
        protocol: a key of :data:`PROTOCOLS`.
    """
    check_protocol(protocol)
    return f"{protocol}_metrics.csv"


def check_protocol(protocol: str) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`, else a :class:`DruwasError` listing them."""
    if protocol not in PROTOCOLS:
        from nnunetv2_druwas.errors import DruwasError
        raise DruwasError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    return protocol


def fold_protocols() -> tuple[str, ...]:
    """The protocols a DRUwAS trainer scores its fold under after the final validation.

    Those named in ``DRUWAS_PROTOCOLS`` (comma separated, e.g. ``eq2,authors``; in that order, each once),
    then ``brats``, always and last: its ``brats_metrics.csv`` marks the fold done
    (:func:`nnunetv2_druwas.folds.fold_state`), so a fold whose requested protocols failed is not done.

    Raises:
        DruwasError: ``DRUWAS_PROTOCOLS`` names an unknown protocol (the message names the variable).
    """
    from nnunetv2_druwas import env
    from nnunetv2_druwas.errors import DruwasError

    text = env.value(PROTOCOLS_VARIABLE) or ""
    names = [name.strip() for name in text.replace(" ", ",").split(",") if name.strip()]
    unknown = [name for name in names if name not in PROTOCOLS]
    if unknown:
        raise DruwasError(f"{PROTOCOLS_VARIABLE}={text!r} names unknown protocol(s) {', '.join(unknown)}; "
                          f"give a comma-separated list of {', '.join(PROTOCOLS)}")
    return tuple(dict.fromkeys(name for name in names if name != DEFAULT_PROTOCOL)) + (DEFAULT_PROTOCOL,)
