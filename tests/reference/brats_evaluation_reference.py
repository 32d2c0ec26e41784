"""Reference values of the official BraTS evaluation package for ``tests/test_lesionwise.py``.

    python tests/reference/brats_evaluation_reference.py [--venv DIR] [--out tests/data/lesionwise]
                                                         [--new-cases]

The official package ``brats-evaluation`` 0.0.10 pins numpy<2.3 and pandas<3, so it cannot live in
the project's environment. This script

1. takes the test cases from ``OUT/cases.npz`` (label maps with the ``gli`` labels 1 NETC, 2 SNFH,
   3 ET, and a voxel spacing per case); with ``--new-cases``, or when the file is missing, it first
   writes them from the seeded generator below. The cases are committed: the test reads the same
   arrays, whatever numpy version it runs with (numpy's random streams may change between versions,
   so a regenerated ``cases.npz`` can differ, and its reference values are recomputed with it);
2. creates (or reuses) a virtual environment at ``--venv`` (default: ``brats_evaluation_0.0.10_venv``
   in the system's temporary folder) with ``brats-evaluation==0.0.10`` and ``panoptica==2.1.7``
   (the package itself only asks for panoptica>=2.1.0; the pin keeps the reference reproducible);
3. runs itself with that environment's Python (``--inner``) to evaluate every case with the package's
   ``gli`` configuration twice: (a) the evaluator on the arrays with the case's spacing
   (``Panoptica_Evaluator.evaluate(pred, ref, voxelspacing=...)``), and (b) the package's own
   ``evaluate_single_exam`` on NIfTI files written with nibabel (the way the challenge runs it); both
   go through the package's ``parse_seg_results``, whose CSV columns are the reference values;
4. writes ``OUT/reference.json``: per case and region (WT, TC, ET) the ``array`` and ``files`` values
   under our row keys, with the versions of brats-evaluation, panoptica, numpy, scipy, cc3d and
   SimpleITK that computed them, and the run time.

It needs network access to PyPI the first time (for the virtual environment) and takes about a
minute after that.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PACKAGE = "brats-evaluation==0.0.10"
PANOPTICA = "panoptica==2.1.7"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "data" / "lesionwise"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "brats_evaluation_0.0.10_venv"
# our region -> the package's group name in config_gli.yaml, and the labels (gli: 1 NETC, 2 SNFH, 3 ET)
REGIONS = {"WT": ("wt", (1, 2, 3)), "TC": ("tc", (1, 3)), "ET": ("et", (3,))}
# our row key -> the column prefix of parse_seg_results (the column is prefix + "_" + group)
COLUMNS = {"dice": "lesionwise_dsc_mean", "hd95": "lesionwise_hd95_mean", "nsd": "lesionwise_nsd_mean",
           "global_dice": "global_dsc", "global_nsd": "global_nsd", "global_hd95": "global_hd95",
           "lesion_tp": "all_instance_tp", "lesion_fp": "all_instance_fp", "lesion_fn": "all_instance_fn"}
COUNTS = ("lesion_tp", "lesion_fp", "lesion_fn")
SEED = 20251016


# ----------------------------------------------------------------------------------------------
# The cases (run with the project's Python)
# ----------------------------------------------------------------------------------------------

def ellipsoid(shape: tuple[int, ...], center, radii) -> np.ndarray:
    """Boolean ellipsoid with the given center and semi-axes (voxels)."""
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def paint_tumour(volume: np.ndarray, center, radii, enhancing: bool = True, core: bool = True) -> None:
    """A glioma-like lesion: edema (2) ellipsoid, enhancing (3) inner ellipsoid, necrosis (1) core."""
    volume[ellipsoid(volume.shape, center, radii)] = 2
    if enhancing:
        volume[ellipsoid(volume.shape, center, [0.65 * r for r in radii])] = 3
    if core:
        volume[ellipsoid(volume.shape, center, [0.35 * r for r in radii])] = 1


def perturbed(rng: np.random.Generator, center, radii):
    """A prediction of a lesion: center shifted by up to 2 voxels, radii scaled by 0.8-1.2."""
    return ([c + int(rng.integers(-2, 3)) for c in center], [r * float(rng.uniform(0.8, 1.2)) for r in radii])


def random_case(rng: np.random.Generator, shape, n_lesions: int, n_fp: int, p_detect: float):
    """Up to n_lesions tumours (each found with probability p_detect) and n_fp false-positive blobs."""
    ref, pred = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for _ in range(n_lesions):
        radii = [float(rng.uniform(2.5, 7.0)) for _ in shape]
        center = [int(rng.integers(int(r) + 1, s - int(r) - 1)) for r, s in zip(radii, shape)]
        enhancing = bool(rng.random() < 0.8)
        paint_tumour(ref, center, radii, enhancing=enhancing)
        if rng.random() < p_detect:
            c, r = perturbed(rng, center, radii)
            paint_tumour(pred, c, r, enhancing=enhancing or bool(rng.random() < 0.5))
    for _ in range(n_fp):
        radii = [float(rng.uniform(1.0, 3.0)) for _ in shape]
        center = [int(rng.integers(3, s - 3)) for s in shape]
        pred[ellipsoid(shape, center, radii)] = int(rng.choice([2, 3]))
    return pred, ref


# Designed cases: name, description, shape, spacing, reference drawing, prediction drawing. A drawing is a
# list of ("tumour", center, radii[, enhancing, core]), ("ellipsoid", center, radii, label) and
# ("box", (start, stop) per axis, label) steps, painted in order.
ISO = (1.0, 1.0, 1.0)
DESIGNED_CASES = [
    ("one_lesion", "one lesion, prediction shifted and rescaled", (48, 48, 40), ISO,
     [("tumour", (24, 24, 20), (9, 7, 6))], [("tumour", (25, 24, 20), (8.5, 7.5, 6))]),
    ("two_distant_lesions", "two distant lesions, both found", (56, 48, 44), ISO,
     [("tumour", (14, 14, 12), (6, 5, 5)), ("tumour", (40, 32, 30), (7, 6, 5))],
     [("tumour", (15, 14, 12), (5, 5, 6)), ("tumour", (40, 31, 29), (7, 7, 5))]),
    ("missed_lesion", "two lesions, the smaller one missed", (56, 48, 44), ISO,
     [("tumour", (14, 14, 12), (6, 5, 5)), ("tumour", (40, 32, 30), (4, 4, 3))],
     [("tumour", (14, 15, 12), (6, 5, 4))]),
    ("false_positive_blobs", "one lesion found, three false-positive blobs (edema, enhancing, one voxel)",
     (56, 48, 44), ISO, [("tumour", (20, 20, 20), (8, 7, 6))],
     [("tumour", (21, 20, 19), (8, 6, 6)), ("ellipsoid", (46, 10, 8), (2, 2, 2), 2),
      ("ellipsoid", (46, 38, 36), (2, 3, 2), 3), ("box", ((5, 6), (40, 41), (40, 41)), 3)]),
    ("touching_lesions_merged", "two edemas that touch (one WT lesion, two TC/ET lesions), predicted as one",
     (60, 48, 40), ISO, [("tumour", (20, 24, 20), (9, 8, 7)), ("tumour", (38, 24, 20), (9, 8, 7))],
     [("tumour", (29, 24, 20), (18, 9, 8))]),
    ("split_prediction", "one lesion predicted as two halves", (48, 48, 40), ISO,
     [("tumour", (24, 24, 20), (12, 8, 7))],
     [("tumour", (24, 24, 20), (12, 8, 7)), ("box", ((23, 26), (0, 48), (0, 40)), 0)]),
    ("diagonal_contact", "two cubes touching at one corner (one lesion in 26-connectivity) and a third",
     (48, 48, 40), ISO,
     [("box", ((10, 15), (10, 15), (10, 15)), 2), ("box", ((15, 19), (15, 19), (15, 19)), 3),
      ("box", ((30, 33), (30, 33), (30, 33)), 3)],
     [("box", ((10, 15), (10, 15), (11, 16)), 2), ("box", ((31, 34), (30, 33), (30, 33)), 3)]),
    ("empty_prediction", "two lesions, empty prediction", (48, 48, 40), ISO,
     [("tumour", (24, 20, 20), (8, 8, 6)), ("tumour", (10, 38, 10), (3, 3, 3))], []),
    ("empty_reference", "empty reference, one predicted lesion", (48, 48, 40), ISO,
     [], [("tumour", (24, 20, 20), (8, 8, 6))]),
    ("both_empty", "both empty", (40, 40, 40), ISO, [], []),
    ("enhancing_only_predicted", "no enhancing tumour in the reference, some in the prediction", (48, 48, 40), ISO,
     [("tumour", (24, 24, 20), (9, 8, 6), False)], [("tumour", (24, 25, 20), (9, 8, 6))]),
    ("edema_only", "edema only in both (TC and ET empty in both)", (48, 48, 40), ISO,
     [("tumour", (24, 24, 20), (9, 8, 6), False, False)], [("tumour", (23, 24, 21), (9, 9, 6), False, False)]),
    ("near_miss", "prediction next to the lesion without overlap", (48, 48, 40), ISO,
     [("tumour", (16, 24, 20), (6, 6, 6))], [("tumour", (30, 24, 20), (6, 6, 6))]),
    ("single_voxel_lesions", "one-voxel lesions: exact, face and edge neighbours, a miss, a false positive",
     (40, 40, 40), ISO,
     [("box", tuple((c, c + 1) for c in point), 3)
      for point in [(5, 5, 5), (5, 5, 20), (20, 30, 10), (35, 35, 35), (12, 30, 30)]],
     [("box", tuple((c, c + 1) for c in point), 3)
      for point in [(5, 5, 5), (5, 6, 20), (20, 31, 11), (30, 10, 10), (5, 5, 21)]]),
    ("lesions_at_border", "lesions cut by the volume border", (48, 48, 40), ISO,
     [("tumour", (2, 24, 20), (8, 8, 6)), ("tumour", (40, 40, 35), (6, 6, 6))],
     [("tumour", (3, 24, 20), (8, 7, 6)), ("tumour", (41, 40, 36), (6, 6, 6))]),
    # two reference lesions of 216 voxels (6 x 6 x 6, and 6 x 4 x 9, which comes first in the scan order of the
    # transposed array), a predicted bar overlapping each by 8 voxels
    ("tie", "one predicted bar overlapping two reference lesions of equal size equally (a tie in the "
     "matching, decided by the lesion numbering)", (48, 48, 40), ISO,
     [("box", ((10, 16), (20, 26), (15, 21)), 3), ("box", ((30, 36), (21, 25), (13, 22)), 3)],
     [("box", ((14, 32), (22, 24), (17, 19)), 3)]),
    ("anisotropic_thick_slices", "three lesions, one missed, a false positive, 1 x 1 x 2.5 mm", (52, 52, 24),
     (1.0, 1.0, 2.5),
     [("tumour", (14, 14, 8), (7, 6, 3)), ("tumour", (36, 36, 14), (8, 8, 4)), ("tumour", (40, 10, 16), (3, 3, 2))],
     [("tumour", (15, 14, 8), (6, 6, 3)), ("tumour", (36, 37, 15), (8, 9, 4)),
      ("ellipsoid", (10, 40, 5), (2, 2, 1.5), 2)]),
] + [  # the Dice threshold of the matching: a one-voxel lesion inside a large predicted block
    (f"dice_threshold_{side}", f"one reference voxel inside a {side}^3 predicted block: Dice "
     f"{2 / (side ** 3 + 1):.3g}, {matched} (threshold 1e-6)", (130, 130, 130), ISO,
     [("box", ((60, 61),) * 3, 3)], [("box", ((2, 2 + side),) * 3, 3)])
    for side, matched in ((126, "not matched"), (124, "matched"))
]


def draw(shape: tuple[int, ...], steps: list[tuple]) -> np.ndarray:
    """A label map painted with the steps of a drawing (see DESIGNED_CASES)."""
    volume = np.zeros(shape, np.uint8)
    for kind, *args in steps:
        if kind == "tumour":
            paint_tumour(volume, *args)
        elif kind == "ellipsoid":
            volume[ellipsoid(shape, args[0], args[1])] = args[2]
        else:
            volume[tuple(slice(a, b) for a, b in args[0])] = args[1]
    return volume


def make_cases(seed: int = SEED) -> list[dict]:
    """The reference cases: the designed ones, then seeded random multi-lesion cases."""
    cases = [(name, description, draw(shape, pred), draw(shape, ref), spacing)
             for name, description, shape, spacing, ref, pred in DESIGNED_CASES]
    rng = np.random.default_rng(seed)
    cases.append(("anisotropic_fine", "random case, 0.7 x 0.7 x 1.4 mm (NSD tolerance 0.7 mm)",
                  *random_case(rng, (56, 56, 44), n_lesions=3, n_fp=1, p_detect=0.9), (0.7, 0.7, 1.4)))
    for i in range(8):
        shape = tuple(int(s) for s in rng.integers(40, 65, 3))
        pred, ref = random_case(rng, shape, n_lesions=int(rng.integers(1, 5)), n_fp=int(rng.integers(0, 3)),
                                p_detect=0.75)
        spacing = ISO if i % 2 == 0 else tuple(round(float(s), 2) for s in rng.uniform(0.6, 3.0, 3))
        cases.append((f"random_{i}", f"seeded random multi-lesion case {i}", pred, ref, spacing))
    return [{"name": name, "description": description, "pred": pred, "ref": ref, "spacing": spacing}
            for name, description, pred, ref, spacing in cases]


def write_cases(cases: list[dict], path: Path) -> None:
    """Store the cases as one compressed .npz (uint8 label maps, float spacings, names, descriptions)."""
    arrays = {}
    for i, case in enumerate(cases):
        arrays[f"pred_{i}"], arrays[f"ref_{i}"] = case["pred"], case["ref"]
        arrays[f"spacing_{i}"] = np.asarray(case["spacing"], dtype=np.float64)
    arrays["names"] = np.array([c["name"] for c in cases])
    arrays["descriptions"] = np.array([c["description"] for c in cases])
    np.savez_compressed(path, **arrays)


def read_cases(path: Path) -> list[dict]:
    """The cases stored by :func:`write_cases`."""
    with np.load(path) as data:
        return [{"name": str(name), "description": str(description), "pred": data[f"pred_{i}"],
                 "ref": data[f"ref_{i}"], "spacing": tuple(float(s) for s in data[f"spacing_{i}"])}
                for i, (name, description) in enumerate(zip(data["names"], data["descriptions"]))]


def ensure_venv(venv: Path) -> Path:
    """The Python of a virtual environment with the pinned package, created when it lacks one."""
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    check = [str(python), "-c", "import importlib.metadata as m; assert m.version('brats-evaluation') == '0.0.10'"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", PACKAGE, PANOPTICA], check=True)
    return python


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python tests/reference/brats_evaluation_reference.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture folder (cases.npz, reference.json)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="virtual environment for the package")
    parser.add_argument("--new-cases", action="store_true", help="regenerate cases.npz from the seeded generator")
    parser.add_argument("--inner", nargs=2, metavar=("CASES", "JSON"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.inner:
        evaluate_with_package(Path(args.inner[0]), Path(args.inner[1]))
        return
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    cases_path = args.out / "cases.npz"
    if args.new_cases or not cases_path.exists():
        write_cases(make_cases(), cases_path)
    python = ensure_venv(args.venv)
    setup_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reference.json"
        subprocess.run([str(python), str(Path(__file__).resolve()), "--inner", str(cases_path), str(out)],
                       check=True)
        reference = json.loads(out.read_text())
    reference["seconds"].update(cases_and_venv=round(setup_s, 1), total=round(time.perf_counter() - start, 1))
    (args.out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"wrote {args.out / 'reference.json'}: {len(reference['cases'])} cases in "
          f"{reference['seconds']['total']:.1f} s ({reference['seconds']['package']:.1f} s in the package)")


# ----------------------------------------------------------------------------------------------
# The package (run with the virtual environment's Python; imports only what is installed there)
# ----------------------------------------------------------------------------------------------

def evaluate_with_package(cases_path: Path, out_json: Path) -> None:
    """Evaluate every case with brats-evaluation (arrays and NIfTI files) and write the values as JSON."""
    import importlib.metadata as metadata
    import warnings

    import nibabel as nib
    import pandas as pd
    from brats_evaluation import config_path, evaluate_single_exam, parse_seg_results
    from panoptica import Panoptica_Evaluator

    warnings.simplefilter("ignore")
    evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
    cases = read_cases(cases_path)
    start = time.perf_counter()
    results = {"array": [], "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            name = f"case-{i:05d}"
            # (a) the evaluator on the arrays, as evaluate_single_exam builds its result
            groups = evaluator.evaluate(case["pred"], case["ref"], voxelspacing=case["spacing"])
            results["array"].append({**{k: r.to_dict(True) for k, r in groups.items()}, "subject_name": name})
            # (b) the package's own entry point on NIfTI files
            paths = []
            for kind in ("pred", "ref"):
                path = Path(tmp) / f"{kind}-{name}.nii.gz"
                nib.save(nib.Nifti1Image(case[kind], np.diag([*case["spacing"], 1.0])), str(path))
                paths.append(str(path))
            results["files"].append(evaluate_single_exam(paths[0], paths[1], name, evaluator))
        tables = {}
        for way, metrics in results.items():
            json_path, csv_path = Path(tmp) / f"{way}.json", Path(tmp) / f"{way}.csv"
            json_path.write_text(json.dumps({"metrics": metrics, "missings": []}, indent=4))
            parse_seg_results(str(json_path), str(csv_path))
            tables[way] = pd.read_csv(csv_path).set_index("subject_id")
    seconds = time.perf_counter() - start

    entries = []
    for i, case in enumerate(cases):
        entry = {"name": case["name"], "description": case["description"], "spacing": list(case["spacing"]),
                 "shape": list(case["ref"].shape)}
        for way, table in tables.items():
            row = table.loc[f"case-{i:05d}"]
            entry[way] = {region: {key: _value(row[f"{column}_{group}"], key in COUNTS)
                                   for key, column in COLUMNS.items()}
                          for region, (group, _) in REGIONS.items()}
        entries.append(entry)
    versions = {name: metadata.version(name) for name in
                ("brats-evaluation", "panoptica", "numpy", "scipy", "connected-components-3d", "SimpleITK",
                 "nibabel", "pandas")}
    out_json.write_text(json.dumps({
        "package": PACKAGE, "config": "gli", "versions": versions,
        "python": sys.version.split()[0], "regions": {r: list(labels) for r, (_, labels) in REGIONS.items()},
        "columns": COLUMNS, "seconds": {"package": round(seconds, 1)}, "cases": entries}))


def _value(value, count: bool):
    value = float(value)
    return int(value) if count else value


if __name__ == "__main__":
    main()
