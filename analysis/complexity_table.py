"""Table 5: model complexity, from the ``complexity.csv`` of ``python -m nnunetv2_druwas.benchmarks.complexity``.

:func:`find_complexity` says which file (``--complexity FILE``; else ``<results>/complexity.csv``; else
``<out>/complexity.csv``; none: no Table 5), :func:`read_complexity` reads and checks it (a malformed file
is a :class:`~nnunetv2_druwas.errors.DruwasError` naming it), :func:`complexity_sheet` renders it with the
tables' renderer (:mod:`analysis.render`): one row per model, labelled as the variants table labels a
variant and as the tables label nnU-Net's networks (:func:`nnunetv2_druwas.variants.reference_label` of
its plans), with its parameters, GFLOPs, the MiB saved for the backward pass without and with
checkpointing, and the timing columns the file has (step time as a ratio to nnU-Net's default network,
inference seconds per case, CUDA peak memory). The footnotes are the file's own description of how it
was measured (its ``protocol`` column). ``table5.csv`` is the file with the ``label`` column added.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from analysis.render import Cell, Column, Layout, Sheet
from nnunetv2_druwas.errors import DruwasError

NAME = "table5"
TITLE = "Table 5."
CAPTION = ("Model complexity: size, compute and memory of every DRUwAS variant against nnU-Net's networks, all "
           "built from nnU-Net's BraTS plans")
FILE = "complexity.csv"
#: The columns every complexity.csv has (numbers: :data:`COUNTED`).
REQUIRED = ("model", "network", "plans", "parameters", "gflops_forward_128", "saved_for_backward_mib_128_b2",
            "saved_for_backward_mib_128_b2_checkpointing", "protocol")
#: The counted columns: (column, spanning header, own header, one-line header, decimals).
COUNTED = (("parameters", "Size", "parameters", "Parameters", 0),
           ("gflops_forward_128", "Compute", "GFLOPs", "GFLOPs (forward, 128^3)", 1),
           ("saved_for_backward_mib_128_b2", "Saved for backward (MiB)", "plain", "Saved MiB", 1),
           ("saved_for_backward_mib_128_b2_checkpointing", "Saved for backward (MiB)", "checkpointing",
            "Saved MiB, checkpointing", 1))
#: The timed columns shown when the file has them (regular expression, spanning header, decimals); the
#: headers use the groups (device, patch, batch) and a last group that names the variant of the column.
TIMED = ((re.compile(r"^(cpu|cuda)_step_ratio_(\d+)_b(\d+)(_checkpointing)?$"), "{0} step / nnU-Net ({1}^3, b{2})", 3),
         (re.compile(r"^(cpu|cuda)_inference_s_case(_mirrored)?$"), "{0} inference (s/case)", 1),
         (re.compile(r"^(cuda)_max_memory_mib_(\d+)_b(\d+)(_checkpointing)?$"), "{0} max memory (MiB, {1}^3, b{2})",
          0))
_STEP_SECONDS = re.compile(r"^(cpu|cuda)_step_s_(\d+)_b(\d+)$")


def find_complexity(given: str | Path | None, results: str | Path | None, out: str | Path) -> Path | None:
    """The complexity.csv of Table 5: ``given``, else ``<results>/complexity.csv``, else ``<out>/complexity.csv``.

    Args:
        given: ``--complexity FILE`` (must exist), or None to look in the two folders.
        results: the results folder, or None.
        out: the output folder of the tables.

    Raises:
        DruwasError: ``given`` does not exist.
    """
    if given is not None:
        if not Path(given).is_file():
            raise DruwasError(f"--complexity {given}: no such file; write it with python -m "
                              f"nnunetv2_druwas.benchmarks.complexity --out DIR")
        return Path(given)
    for folder in (results, out):
        if folder is not None and (Path(folder) / FILE).is_file():
            return Path(folder) / FILE
    return None


def _labels() -> dict[str, str]:
    """model key -> its label, for the variants (nnU-Net's networks are labelled by their plans)."""
    from nnunetv2_druwas.variants import VARIANTS

    return {v.key: v.label for v in VARIANTS}


def read_complexity(path: str | Path) -> pd.DataFrame:
    """A complexity.csv, checked, with a ``label`` column after ``model``.

    Args:
        path: the file.

    Raises:
        DruwasError: not a readable CSV, no rows, a required column missing, an unknown or repeated model,
            or a value that is not a number (or a parameter count that is not a whole number), each naming
            the file.
    """
    from nnunetv2_druwas.benchmarks.complexity import NNUNET_MODELS
    from nnunetv2_druwas.variants import reference_label

    path = Path(path)
    hint = "write it again with python -m nnunetv2_druwas.benchmarks.complexity"
    try:
        frame = pd.read_csv(path, dtype={"model": str, "network": str, "plans": str, "protocol": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise DruwasError(f"{path}: not a readable complexity table ({exc}); {hint}") from exc
    absent = [c for c in REQUIRED if c not in frame.columns]
    if absent:
        raise DruwasError(f"{path}: missing column(s) {', '.join(absent)}; {hint}")
    if frame.empty:
        raise DruwasError(f"{path}: no rows; {hint}")
    labels = _labels()
    known = [*labels, *NNUNET_MODELS]
    unknown = sorted(set(frame["model"].astype(str)) - set(known))
    if unknown:
        raise DruwasError(f"{path}: unknown model(s) {', '.join(unknown)}; expected the keys {', '.join(known)}")
    repeated = sorted(frame.loc[frame["model"].duplicated(), "model"])
    if repeated:
        raise DruwasError(f"{path}: model(s) {', '.join(repeated)} listed more than once")
    numeric = [c for c, *_ in COUNTED] + [c for c in frame.columns if _timed(c) or _STEP_SECONDS.match(c)]
    for column in numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if column == "parameters":
            bad |= values.isna() | (values < 0) | (values != values.round())
        if bad.any():
            row = frame[bad].iloc[0]
            raise DruwasError(f"{path}: {column} of model {row['model']} is {row[column]!r}, not "
                              f"{'a whole number' if column == 'parameters' else 'a number'}; {hint}")
        frame[column] = values
    frame["parameters"] = frame["parameters"].astype("int64")
    frame.insert(1, "label", [labels[m] if m in labels else reference_label("nnUNetTrainer", str(p).split()[0])
                              for m, p in zip(frame["model"], frame["plans"])])
    return frame


def _timed(column: str) -> tuple[str, int] | None:
    """(spanning header, decimals) of a timed column; None for other columns."""
    for pattern, header, decimals in TIMED:
        match = pattern.match(column)
        if match:
            parts = list(match.groups())
            parts[0] = parts[0].upper() if parts[0] == "cpu" else "CUDA"
            return header.format(*parts), decimals
    return None


def complexity_sheet(frame: pd.DataFrame, path: str | Path) -> Sheet:
    """Table 5 as a :class:`~analysis.render.Sheet`.

    Args:
        frame: :func:`read_complexity`'s table.
        path: the file it came from (named in a footnote).
    """
    columns, shown = [], []
    for column, top, sub, flat, decimals in COUNTED:
        columns.append(Column(top, sub, flat))
        shown.append((column, decimals))
    for column in frame.columns:
        timed = _timed(column)
        if timed is not None:
            variant = "checkpointing" if column.endswith("_checkpointing") else \
                "mirrored" if column.endswith("_mirrored") else "plain"
            columns.append(Column(timed[0], variant, f"{timed[0]}, {variant}"))
            shown.append((column, timed[1]))
    labels = _labels()
    groups: dict[str, list] = {}
    for _, row in frame.iterrows():
        title = "DRUwAS variants (built from nnU-Net's default plan)" if row["model"] in labels else \
            "nnU-Net's networks (from their own plans)"
        cells = [Cell("-" if pd.isna(row[c]) else f"{float(row[c]):,.{d}f}") for c, d in shown]
        groups.setdefault(title, []).append(([row["label"], row["model"], str(row["network"])], cells))
    notes = [str(text) for text in frame["protocol"].dropna().unique()]
    notes.append("Model: the variant's label (the variants table) or nnU-Net's network by its plans; key: the "
                 "model column of the file; -: not measured (checkpointing is the DRUwAS network's switch; "
                 "timing not run or not for that model).")
    for column in frame.columns:
        match = _STEP_SECONDS.match(column)
        reference = frame[frame["model"] == "nnunet_default"]
        if match and not reference.empty and not pd.isna(reference[column].iloc[0]):
            device = "CPU" if match.group(1) == "cpu" else "CUDA"
            notes.append(f"{device} step / nnU-Net: the step time as a ratio to nnU-Net's default network's, "
                         f"{reference[column].iloc[0]:.2f} s per step at {match.group(2)}^3, batch {match.group(3)}.")
    notes.append(f"Source: {path} (python -m nnunetv2_druwas.benchmarks.complexity).")
    layout = Layout(["Model", "Key", "Network"], columns, list(groups.items()),
                    r">{\raggedright\arraybackslash}p{4.2cm}ll")
    return Sheet(NAME, TITLE, CAPTION, layout, notes)
