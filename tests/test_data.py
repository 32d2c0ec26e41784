"""BraTS conversion, export and synthetic data: layouts, bad input, split, round trip, determinism."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nnunetv2_druwas import cli
from nnunetv2_druwas.data.brats import BRATS_TO_NNUNET
from nnunetv2_druwas.data.convert import (PAPER_TEST_IMAGES, PAPER_TEST_LABELS, TEST_IMAGES, TEST_LABELS, convert_brats,
                                          paper_split)
from nnunetv2_druwas.data.export import export_brats
from nnunetv2_druwas.data.synth import make_brats_release, synthesize_case
from nnunetv2_druwas.errors import DruwasError

SHAPE = (16, 16, 12)
MODALITIES = ("t1", "t1ce", "t2", "flair")
QUIRK_2020_SEG = "W39_1998.09.19_Segm.nii"   # as named in the real 2020 training release


def release(tmp_path: Path, year: int = 2020, n: int = 4, **kw) -> Path:
    return make_brats_release(tmp_path / f"src{year}{'_val' if kw.get('validation') else ''}", year, n, SHAPE,
                              seed=3, **kw)


def case_file(src: Path, case: str, role: str) -> Path:
    """The file of ``case`` with ``role`` (t1 ... seg) in any layout."""
    (path,) = [p for p in src.rglob(f"{case}_{role}.nii*")]
    return path


def nii_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def raw_root() -> Path:
    return Path(os.environ["nnUNet_raw"])


def cli_run(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


# Written out here, not imported: what the conversion must do, as nnU-Net's own Dataset137_BraTS21
# conversion does it (BraTS 1 necrosis / non-enhancing core, 2 edema, 4 enhancing tumor).
BRATS_TO_NNUNET_LABEL = {0: 0, 1: 2, 2: 1, 4: 3}
# The BraTS labels inside each region (BraTS 2018-2020 evaluation), by the region names of dataset.json.
BRATS_REGION_LABELS = {"whole tumor": {1, 2, 4}, "tumor core": {1, 4}, "enhancing tumor": {4}}


# --- synth -------------------------------------------------------------------------------------------

def test_synth_is_deterministic_and_has_both_grades():
    a, b = synthesize_case(SHAPE, seed=5, index=2), synthesize_case(SHAPE, seed=5, index=2)
    for m in MODALITIES:
        assert a.images[m].tobytes() == b.images[m].tobytes()
        assert a.images[m].dtype == np.int16 and a.images[m].shape == SHAPE
    assert a.seg.tobytes() == b.seg.tobytes()
    assert synthesize_case(SHAPE, seed=6, index=2).images["flair"].tobytes() != a.images["flair"].tobytes()
    cases = [synthesize_case((24, 24, 20), seed=0, index=i, lgg_fraction=0.5) for i in range(1, 9)]
    grades = {c.low_grade for c in cases}
    assert grades == {True, False}
    for c in cases:
        labels = set(np.unique(c.seg).tolist())
        assert labels <= {0, 1, 2, 4} and 2 in labels
        assert (4 in labels) != c.low_grade  # low-grade cases have no enhancing tumor
        tumor, brain = c.seg > 0, c.images["t1"] > 0
        # edema is bright in FLAIR compared with the rest of the brain
        edema = c.seg == 2
        assert c.images["flair"][edema].mean() > 1.3 * c.images["flair"][brain & ~tumor].mean()


def test_synth_release_files_are_deterministic(tmp_path, capsys):
    code, err = cli_run(["synth", str(tmp_path / "a"), "--cases", "3", "--shape", *map(str, SHAPE),
                         "--seed", "1"], capsys)
    assert code == 0, err
    make_brats_release(tmp_path / "b", 2020, 3, SHAPE, seed=1)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert Path("name_mapping.csv") in files and Path("BraTS20_Training_001/BraTS20_Training_001_t1.nii") in files
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    code, err = cli_run(["synth", str(tmp_path / "a"), "--cases", "1"], capsys)
    assert code == 2 and "already exists" in err


# --- conversion of each layout -----------------------------------------------------------------------

@pytest.mark.parametrize("year,dataset_id", [(2018, 502), (2019, 501), (2020, 500)])
def test_convert_each_layout(tmp_path, nnunet_env, year, dataset_id):
    src = release(tmp_path, year, n=4, lgg_fraction=0.5)
    if year != 2020:
        assert {p.name for p in src.iterdir()} <= {"HGG", "LGG"}
        assert next(src.rglob("*_t1.nii.gz"))
    else:
        assert (src / "name_mapping.csv").is_file() and next(src.glob("*/*_t1.nii"))
    out = convert_brats(src, year, num_processes=2 if year == 2020 else 1, progress=False)
    assert out == raw_root() / f"Dataset{dataset_id}_BraTS{year}"
    assert sorted(p.name for p in raw_root().iterdir()) == [out.name]  # no partial folder left
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["brats_year"] == year and dataset["numTraining"] == 4
    assert dataset["regions_class_order"] == [1, 2, 3]
    assert dataset["labels"]["whole tumor"] == [1, 2, 3] and dataset["channel_names"]["1"] == "T1ce"
    cases = sorted(p.name for p in src.rglob("*") if p.is_dir() and p.name not in ("HGG", "LGG"))
    assert sorted(p.name[: -len(".nii.gz")] for p in (out / "labelsTr").iterdir()) == cases
    for case in cases:
        for channel, modality in enumerate(MODALITIES):
            written = out / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
            assert nii_bytes(written) == nii_bytes(case_file(src, case, modality))  # header + data unchanged
        source = nib.load(case_file(src, case, "seg"))
        label = nib.load(out / "labelsTr" / f"{case}.nii.gz")
        assert label.get_data_dtype() == np.uint8 and np.allclose(label.affine, source.affine)
        expected = np.vectorize(BRATS_TO_NNUNET_LABEL.get)(np.asanyarray(source.dataobj))
        assert np.array_equal(np.asanyarray(label.dataobj), expected)


def hand_made_tumour(shape=SHAPE) -> np.ndarray:
    """Nested boxes in BraTS labels: edema (2) around enhancing tumor (4) around necrosis (1)."""
    seg = np.zeros(shape, np.uint8)
    seg[2:14, 2:14, 2:10] = 2      # 12 x 12 x 8 = 1152 voxels of tumor, 768 of them edema
    seg[4:12, 4:12, 3:9] = 4       # 8 x 8 x 6 = 384 voxels of core, 320 of them enhancing
    seg[6:10, 6:10, 4:8] = 1       # 4 x 4 x 4 = 64 voxels of necrosis
    return seg


def dice_by_hand(pred: np.ndarray, ref: np.ndarray) -> float:
    total = int(pred.sum() + ref.sum())
    return 1.0 if total == 0 else 2 * int((pred & ref).sum()) / total


def test_converted_labels_mean_what_the_brats_labels_mean(tmp_path, nnunet_env, capsys):
    """A hand-made case through `convert-brats`: edema lies in WT only, necrosis in WT and TC, enhancing
    tumor in all three, read with the regions of the converted dataset.json and scored by `evaluate`."""
    src = release(tmp_path, 2020, n=2)
    seg_file = case_file(src, "BraTS20_Training_001", "seg")
    source = nib.load(seg_file)
    brats = hand_made_tumour()
    nib.save(nib.Nifti1Image(brats.astype(source.get_data_dtype()), source.affine, source.header), seg_file)
    code, err = cli_run(["convert-brats", str(src), "--year", "2020", "-np", "1"], capsys)
    assert code == 0, err
    out = raw_root() / "Dataset500_BraTS2020"
    converted = np.asanyarray(nib.load(out / "labelsTr" / "BraTS20_Training_001.nii.gz").dataobj)
    assert BRATS_TO_NNUNET == BRATS_TO_NNUNET_LABEL
    assert np.array_equal(converted, np.vectorize(BRATS_TO_NNUNET_LABEL.get)(brats))

    dataset = json.loads((out / "dataset.json").read_text())
    regions = {name: set(np.atleast_1d(labels).tolist()) for name, labels in dataset["labels"].items()
               if name != "background"}
    assert set(regions) == set(BRATS_REGION_LABELS)
    inside = {name: np.isin(converted, sorted(labels)) for name, labels in regions.items()}
    for name, labels in BRATS_REGION_LABELS.items():   # voxel by voxel: the region holds exactly its BraTS labels
        assert np.array_equal(inside[name], np.isin(brats, sorted(labels))), name
    edema, necrosis, enhancing = brats == 2, brats == 1, brats == 4
    assert inside["whole tumor"][edema].all() and not (inside["tumor core"] | inside["enhancing tumor"])[edema].any()
    assert (inside["whole tumor"] & inside["tumor core"])[necrosis].all()
    assert not inside["enhancing tumor"][necrosis].any()
    assert (inside["whole tumor"] & inside["tumor core"] & inside["enhancing tumor"])[enhancing].all()
    assert not (inside["whole tumor"] | inside["tumor core"] | inside["enhancing tumor"])[brats == 0].any()

    # a prediction that is exactly one BraTS label of the reference, scored by `evaluate`
    acronyms = {"whole tumor": "WT", "tumor core": "TC", "enhancing tumor": "ET"}
    for brats_label in (2, 1, 4):
        pred_dir = tmp_path / f"pred_{brats_label}"
        pred_dir.mkdir()
        label = nib.load(out / "labelsTr" / "BraTS20_Training_001.nii.gz")
        nib.save(nib.Nifti1Image(np.where(brats == brats_label, converted, 0).astype(np.uint8), label.affine,
                                 label.header), pred_dir / "BraTS20_Training_001.nii.gz")
        csv = tmp_path / f"metrics_{brats_label}.csv"
        code, err = cli_run(["evaluate", str(pred_dir), str(out / "labelsTr"), "-o", str(csv), "--dataset-json",
                             str(out / "dataset.json"), "--cases", "BraTS20_Training_001", "--num-processes", "1"],
                            capsys)
        assert code == 0, err
        dice = pd.read_csv(csv).set_index("region")["dice"]
        for name, labels in BRATS_REGION_LABELS.items():
            expected = dice_by_hand((brats == brats_label) & (brats_label in labels), np.isin(brats, sorted(labels)))
            assert dice[acronyms[name]] == pytest.approx(expected, abs=1e-12), (brats_label, name)
        if brats_label == 2:   # the reference edema scores in WT only: 2 x 768 / (768 + 1152)
            assert dice.to_dict() == pytest.approx({"WT": 0.8, "TC": 0.0, "ET": 0.0})


def test_convert_2020_quirk_and_validation_release(tmp_path, nnunet_env):
    src = release(tmp_path, 2020, n=3)
    seg = case_file(src, "BraTS20_Training_002", "seg")
    original = nib.load(seg).get_fdata()
    seg.rename(seg.parent / QUIRK_2020_SEG)
    validation = release(tmp_path, 2020, n=2, validation=True)
    assert not list(validation.rglob("*seg*"))
    out = convert_brats(src, 2020, 7, validation=validation, num_processes=1, progress=False)
    assert out.name == "Dataset007_BraTS2020"
    label = nib.load(out / "labelsTr" / "BraTS20_Training_002.nii.gz").get_fdata()
    assert np.array_equal(label, np.vectorize(BRATS_TO_NNUNET_LABEL.get)(original))
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [
        f"BraTS20_Validation_00{i}_000{c}.nii.gz" for i in (1, 2) for c in range(4)]


def test_synthetic_validation_release_converts_beside_its_training_release(tmp_path, nnunet_env):
    src, validation = release(tmp_path, 2019, n=2), release(tmp_path, 2019, n=2, validation=True)
    out = convert_brats(src, 2019, validation=validation, num_processes=1, progress=False)
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [
        f"BraTS19_SYNVAL_00{i}_1_000{c}.nii.gz" for i in (1, 2) for c in range(4)]


def test_release_with_the_other_years_layout_is_refused(tmp_path, nnunet_env):
    with pytest.raises(DruwasError, match="HGG"):
        convert_brats(release(tmp_path, 2020), 2018, progress=False)
    with pytest.raises(DruwasError, match="check --year"):
        convert_brats(release(tmp_path, 2019), 2020, progress=False)
    # 2018 and 2019 share the layout; the case names tell them apart
    with pytest.raises(DruwasError, match="holds BraTS 2019 cases.*check --year"):
        convert_brats(tmp_path / "src2019", 2018, progress=False)
    with pytest.raises(DruwasError, match="holds BraTS 2020 cases.*check --year"):
        convert_brats(tmp_path / "src2019", 2019, validation=release(tmp_path, 2020, n=1, validation=True),
                      progress=False)
    assert not list(raw_root().iterdir())


# --- bad input ---------------------------------------------------------------------------------------

def _rewrite(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, affine), path)


def _missing(src):
    p = case_file(src, "BraTS20_Training_002", "t2")
    p.unlink()
    return "BraTS20_Training_002", "BraTS20_Training_002_t2"


def _duplicate(src):
    p = case_file(src, "BraTS20_Training_002", "t1")
    (p.parent / (p.name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
    return "BraTS20_Training_002", "BraTS20_Training_002_t1.nii.gz"


def _truncated(src):
    p = case_file(src, "BraTS20_Training_003", "flair")
    p.write_bytes(p.read_bytes()[:600])
    return "BraTS20_Training_003", str(p)


def _corrupt_gzip(src):
    p = case_file(src, "BraTS20_Training_003", "t1ce")
    p.unlink()
    p = p.parent / (p.name + ".gz")
    p.write_bytes(b"\x1f\x8b" + b"not really gzip" * 20)
    return "BraTS20_Training_003", str(p)


def _shape(src):
    p = case_file(src, "BraTS20_Training_001", "t1ce")
    image = nib.load(p)
    _rewrite(p, np.asanyarray(image.dataobj)[:, :, :-1].copy(), image.affine)
    return "BraTS20_Training_001", "t1ce"


def _affine(src):
    p = case_file(src, "BraTS20_Training_004", "t2")
    image = nib.load(p)
    affine = image.affine.copy()
    affine[0, 3] += 2.0
    _rewrite(p, np.asanyarray(image.dataobj).copy(), affine)
    return "BraTS20_Training_004", "BraTS20_Training_004_t2.nii"


def _labels(src):
    p = case_file(src, "BraTS20_Training_001", "seg")
    image = nib.load(p)
    seg = np.asanyarray(image.dataobj).copy()
    seg[0, 0, 0] = 3
    _rewrite(p, seg, image.affine)
    return "BraTS20_Training_001", "[3]"


BAD_INPUTS = {"missing modality": _missing, "duplicate modality": _duplicate, "truncated file": _truncated,
              "corrupt gzip": _corrupt_gzip, "shape mismatch": _shape, "affine mismatch": _affine,
              "bad label values": _labels}


@pytest.mark.parametrize("problem", BAD_INPUTS)
def test_bad_input_is_a_clear_error_and_leaves_nothing(tmp_path, nnunet_env, capsys, problem):
    src = release(tmp_path, 2020, n=4)
    case, detail = BAD_INPUTS[problem](src)
    with pytest.raises(DruwasError) as info:
        convert_brats(src, 2020, num_processes=1, progress=False)
    message = str(info.value)
    assert case in message and detail in message, message
    assert list(raw_root().iterdir()) == []  # no dataset, no partial folder
    code, err = cli_run(["convert-brats", str(src), "--year", "2020", "-np", "1"], capsys)
    assert code == 2 and "error: " in err and case in err and "Traceback" not in err
    assert list(raw_root().iterdir()) == []


def test_all_problems_are_reported_at_once(tmp_path, nnunet_env):
    src = release(tmp_path, 2020, n=4)
    expected = [fn(src) for fn in (_shape, _affine, _truncated)]
    with pytest.raises(DruwasError, match="3 problem") as info:
        convert_brats(src, 2020, num_processes=1, progress=False)
    for case, detail in expected:
        assert case in str(info.value) and detail in str(info.value)


def test_command_line_error_has_no_traceback(tmp_path, nnunet_env):
    src = release(tmp_path, 2020, n=2)
    case_file(src, "BraTS20_Training_001", "seg").unlink()
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.cli", "convert-brats", str(src), "--year", "2020"],
                          env=nnunet_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr and "BraTS20_Training_001" in proc.stderr and "segmentation" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(raw_root().iterdir()) == []


def test_unset_nnunet_raw_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(DruwasError, match="nnUNet_raw is not set"):
        convert_brats(tmp_path, 2020)


# --- overwrite ---------------------------------------------------------------------------------------

def test_existing_dataset_is_kept_unless_overwrite(tmp_path, nnunet_env):
    src = release(tmp_path, 2020, n=3)
    other = raw_root() / "Dataset500_SomethingElse"
    other.mkdir()
    (other / "keep.txt").write_text("user data")
    with pytest.raises(DruwasError, match="Dataset500_SomethingElse.*--overwrite"):
        convert_brats(src, 2020, progress=False, num_processes=1)
    assert (other / "keep.txt").read_text() == "user data"
    # a failing overwrite leaves the old dataset in place
    bad = make_brats_release(tmp_path / "bad", 2020, 3, SHAPE, seed=3)
    _labels(bad)
    with pytest.raises(DruwasError, match="label values"):
        convert_brats(bad, 2020, overwrite=True, progress=False, num_processes=1)
    assert (other / "keep.txt").is_file()
    out = convert_brats(src, 2020, overwrite=True, progress=False, num_processes=1)
    assert sorted(p.name for p in raw_root().iterdir()) == ["Dataset500_BraTS2020"]
    assert len(list((out / "labelsTr").iterdir())) == 3


# --- the paper split ---------------------------------------------------------------------------------

def test_paper_split_counts_disjoint_and_seeded():
    cases = [f"c{i:03d}" for i in range(369)]
    split = paper_split(cases, seed=0)
    assert [len(split[k]) for k in ("train", "val", "test")] == [258, 37, 74]
    assert set(split["train"]) | set(split["val"]) | set(split["test"]) == set(cases)
    assert sum(map(len, split.values())) == len(cases)
    assert paper_split(list(reversed(cases)), seed=0) == split
    assert paper_split(cases, seed=1) != split
    with pytest.raises(DruwasError, match="at least 3"):
        paper_split(["a", "b"])


def test_convert_with_paper_split(tmp_path, nnunet_env):
    src = release(tmp_path, 2020, n=10)
    out = convert_brats(src, 2020, split="paper", seed=4, progress=False, num_processes=1)
    pre = Path(nnunet_env["nnUNet_preprocessed"]) / out.name / "splits_final.json"
    folds = json.loads(pre.read_text())
    assert json.loads((out / "splits_final.json").read_text()) == folds
    record = json.loads((out / "paper_split.json").read_text())
    assert len(folds) == 1 and folds[0] == {"train": record["train"], "val": record["val"]}
    assert (len(record["train"]), len(record["val"]), len(record["test"])) == (7, 1, 2)
    train_cases = {p.name[:-len(".nii.gz")] for p in (out / "labelsTr").iterdir()}
    assert train_cases == set(record["train"]) | set(record["val"])
    assert {p.name[:-len(".nii.gz")] for p in (out / PAPER_TEST_LABELS).iterdir()} == set(record["test"])
    assert len(list((out / PAPER_TEST_IMAGES).iterdir())) == 8
    assert not set(record["test"]) & {p.name[:-len("_0000.nii.gz")] for p in (out / "imagesTr").iterdir()}
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 8 and dataset["paper_split"]["test"] == 2
    # same seed: same split; another seed may not silently replace an existing split file
    shutil.rmtree(out)
    assert convert_brats(src, 2020, split="paper", seed=4, progress=False, num_processes=1) == out
    assert json.loads(pre.read_text()) == folds
    with pytest.raises(DruwasError, match="already exists"):
        convert_brats(src, 2020, split="paper", seed=4, progress=False, num_processes=1)
    shutil.rmtree(out)
    with pytest.raises(DruwasError, match="splits_final.json already exists"):
        convert_brats(src, 2020, split="paper", seed=5, progress=False, num_processes=1)
    convert_brats(src, 2020, split="paper", seed=5, overwrite=True, progress=False, num_processes=1)
    assert json.loads(pre.read_text()) != folds


def test_a_held_out_test_release_converts_beside_the_training_release(tmp_path, nnunet_env, capsys):
    """`synth --first-case` numbers a second release after the first (other cases, same seed), and
    `convert-brats --test` writes it, labels converted, to imagesTs_test / labelsTs_test, apart from
    the training cases; a test release sharing a case with the training release is refused."""
    src = release(tmp_path, 2020, n=3)
    test = make_brats_release(tmp_path / "test", 2020, 2, SHAPE, seed=3, first_case=4)
    assert sorted(p.name for p in test.iterdir() if p.is_dir()) == ["BraTS20_Training_004", "BraTS20_Training_005"]
    # case 4 of the test release is case 4 of one longer release of the same seed
    longer = make_brats_release(tmp_path / "longer", 2020, 4, SHAPE, seed=3)
    for role in ("t1", "seg"):
        assert np.array_equal(nib.load(case_file(test, "BraTS20_Training_004", role)).get_fdata(),
                              nib.load(case_file(longer, "BraTS20_Training_004", role)).get_fdata())
    code, err = cli_run(["convert-brats", str(src), "--year", "2020", "--test", str(test), "-np", "1"], capsys)
    assert code == 0, err
    out = raw_root() / "Dataset500_BraTS2020"
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [f"BraTS20_Training_00{i}.nii.gz" for i in (1, 2, 3)]
    assert sorted(p.name for p in (out / TEST_IMAGES).iterdir()) == [
        f"BraTS20_Training_00{i}_000{c}.nii.gz" for i in (4, 5) for c in range(4)]
    for case in ("BraTS20_Training_004", "BraTS20_Training_005"):
        brats = nib.load(case_file(test, case, "seg")).get_fdata().astype(int)
        converted = np.asanyarray(nib.load(out / TEST_LABELS / f"{case}.nii.gz").dataobj)
        assert np.array_equal(converted, np.vectorize(BRATS_TO_NNUNET_LABEL.get)(brats))
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["numTraining"] == 3
    assert dataset["test_set"] == {"source": str(test.resolve()), "cases": 2, "images": TEST_IMAGES,
                                   "labels": TEST_LABELS}

    code, err = cli_run(["convert-brats", str(src), "--year", "2020", "-d", "7", "--test", str(longer), "-np", "1"],
                        capsys)
    assert code == 2 and "case BraTS20_Training_001: in both" in err and "nothing was written" in err
    assert not list(raw_root().glob("Dataset007_*"))


# --- export ------------------------------------------------------------------------------------------

def test_round_trip_convert_export_gives_the_source_labels(tmp_path, nnunet_env, capsys):
    src = release(tmp_path, 2019, n=3)
    out = convert_brats(src, 2019, progress=False, num_processes=1)
    predictions = tmp_path / "pred"  # labelsTr stand in for predictions, with nnU-Net's dataset.json beside
    shutil.copytree(out / "labelsTr", predictions)
    shutil.copy(out / "dataset.json", predictions / "dataset.json")
    (predictions / "plans.json").write_text("{}")
    code, err = cli_run(["export-brats", str(predictions), str(tmp_path / "submit"), "-np", "1"], capsys)
    assert code == 0, err
    exported = sorted((tmp_path / "submit").iterdir())
    assert [p.name for p in exported] == [f"BraTS19_SYN_00{i}_1.nii.gz" for i in (1, 2, 3)]
    for path in exported:
        image = nib.load(path)
        source = nib.load(case_file(src, path.name[:-len(".nii.gz")], "seg"))
        assert image.get_data_dtype() == np.uint8 and np.allclose(image.affine, source.affine)
        assert np.array_equal(np.asanyarray(image.dataobj), np.asanyarray(source.dataobj))


def prediction_with_a_full_header(labels: np.ndarray, path: Path) -> nib.Nifti1Image:
    """``labels`` saved as int16 with every header field a writer may set: oblique sform and a different
    qform with their own codes, anisotropic zooms and a time step, units, slice information, descrip..."""
    sform = np.array([[0.0, -1.2, 0.1, 10.5], [0.9, 0.0, 0.0, -5.0], [0.0, 0.05, 2.5, 3.25], [0, 0, 0, 1]])
    qform = np.array([[0.0, -1.2, 0.0, 11.0], [0.9, 0.0, 0.0, -5.0], [0.0, 0.0, 2.5, 3.0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(labels.astype(np.int16), sform)
    header = image.header
    header.set_qform(qform, code=1)
    header.set_sform(sform, code=2)
    header.set_xyzt_units("mm", "msec")
    header.set_dim_info(freq=1, phase=0, slice=2)
    header["pixdim"][4] = 2.0
    header["slice_start"], header["slice_end"], header["slice_code"], header["slice_duration"] = 1, 10, 1, 0.25
    header["toffset"] = 1.5
    header["cal_min"], header["cal_max"] = 0.0, 3.0
    header["intent_name"], header["descrip"], header["aux_file"] = b"labels", b"nnU-Net prediction", b"aux.txt"
    nib.save(image, path)
    return nib.load(path)


def test_export_keeps_every_header_field_of_each_prediction(tmp_path, nnunet_env, capsys):
    out = convert_brats(release(tmp_path, 2020, n=2), 2020, progress=False, num_processes=1)
    predictions = tmp_path / "pred"
    predictions.mkdir()
    shutil.copy(out / "dataset.json", predictions / "dataset.json")
    written = {}
    for case in ("BraTS20_Training_001", "BraTS20_Training_002"):
        labels = np.asanyarray(nib.load(out / "labelsTr" / f"{case}.nii.gz").dataobj)
        written[case] = prediction_with_a_full_header(labels, predictions / f"{case}.nii.gz")
    code, err = cli_run(["export-brats", str(predictions), str(tmp_path / "submit"), "-np", "1"], capsys)
    assert code == 0, err
    nnunet_to_brats = {v: k for k, v in BRATS_TO_NNUNET_LABEL.items()}
    changed = {"datatype", "bitpix", "scl_slope", "scl_inter"}   # uint8, unscaled: what the export must change
    for case, prediction in written.items():
        exported = nib.load(tmp_path / "submit" / f"{case}.nii.gz")
        before, after = prediction.header, exported.header
        assert set(after.keys()) == set(before.keys())
        for field in sorted(set(before.keys()) - changed):
            assert np.array_equal(after[field], before[field], equal_nan=after[field].dtype.kind == "f"), \
                (case, field, before[field], after[field])
        assert exported.get_data_dtype() == np.uint8
        assert after.get_slope_inter() in ((None, None), (1.0, 0.0))
        assert (int(after["qform_code"]), int(after["sform_code"])) == (1, 2)
        assert np.array_equal(after.get_qform(), before.get_qform()) and np.array_equal(after.get_sform(),
                                                                                          before.get_sform())
        assert after.get_zooms() == before.get_zooms() == pytest.approx((0.9, 1.2, 2.5))
        assert after.get_xyzt_units() == ("mm", "msec") and after["descrip"] == b"nnU-Net prediction"
        expected = np.vectorize(nnunet_to_brats.get)(np.asanyarray(prediction.dataobj))
        assert np.array_equal(np.asanyarray(exported.dataobj), expected)


def test_export_refuses_what_is_not_a_prediction(tmp_path, nnunet_env, capsys):
    src = release(tmp_path, 2020, n=2)
    out = convert_brats(src, 2020, progress=False, num_processes=1)
    pred = tmp_path / "pred"
    shutil.copytree(out / "labelsTr", pred)
    with pytest.raises(DruwasError, match="--year"):  # no dataset.json, no year
        export_brats(pred, tmp_path / "x")
    with pytest.raises(DruwasError, match="not a BraTS 2018 case"):
        export_brats(pred, tmp_path / "x", 2018, num_processes=1)
    # BraTS labels (4) instead of nnU-Net labels
    victim = pred / "BraTS20_Training_001.nii.gz"
    image = nib.load(victim)
    nib.save(nib.Nifti1Image(np.full(SHAPE, 4, np.uint8), image.affine), victim)
    code, err = cli_run(["export-brats", str(pred), str(tmp_path / "x"), "--year", "2020", "-np", "1"], capsys)
    assert code == 2 and "BraTS20_Training_001.nii.gz" in err and "[4]" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    victim.unlink()
    (pred / "notes.txt").write_text("hello")
    with pytest.raises(DruwasError, match="notes.txt is not an nnU-Net prediction"):
        export_brats(pred, tmp_path / "x", 2020, num_processes=1)
    (pred / "notes.txt").unlink()
    (pred / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    with pytest.raises(DruwasError, match="another dataset"):
        export_brats(pred, tmp_path / "x", num_processes=1)
    shutil.copy(out / "dataset.json", pred / "dataset.json")
    with pytest.raises(DruwasError, match="BraTS 2020 dataset, not BraTS 2019"):
        export_brats(pred, tmp_path / "x", 2019, num_processes=1)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "old.nii.gz").write_bytes(b"")
    with pytest.raises(DruwasError, match="already exists"):
        export_brats(pred, tmp_path / "x", num_processes=1)
    export_brats(pred, tmp_path / "x", overwrite=True, num_processes=1, progress=False)
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["BraTS20_Training_002.nii.gz"]


# --- the 2021 and 2023 releases and the Decathlon's Task01_BrainTumour -------------------------------
# Spelled out here, independently of nnunetv2_druwas.data.brats: each release's file names of the nnU-Net
# channels T1, T1ce, T2, FLAIR (the Decathlon: the channel of its 4-D image) and its labels -> nnU-Net's.
NEW_RELEASES = {
    "2021": dict(args=["--year", "2021"], dataset="Dataset503_BraTS2021", year=2021,
                 modalities=("t1", "t1ce", "t2", "flair"), labels={0: 0, 1: 2, 2: 1, 4: 3},
                 cases=["BraTS2021_00001", "BraTS2021_00002", "BraTS2021_00003"]),
    "2023": dict(args=["--year", "2023"], dataset="Dataset504_BraTS2023GLI", year=2023,
                 modalities=("t1n", "t1c", "t2w", "t2f"), labels={0: 0, 1: 2, 2: 1, 3: 3},
                 cases=["BraTS-GLI-00001-000", "BraTS-GLI-00002-000", "BraTS-GLI-00003-000"]),
    "msd": dict(args=["--msd"], dataset="Dataset505_MSDBrainTumour", year=None,
                modalities=(1, 2, 3, 0), labels={0: 0, 1: 1, 2: 2, 3: 3},
                cases=["BRATS_001", "BRATS_002", "BRATS_003"]),
}


def new_release(tmp_path: Path, key: str, n: int = 3, **kw) -> Path:
    name = f"new{key}{'_val' if kw.get('validation') else ''}"
    return make_brats_release(tmp_path / name, key, n, SHAPE, seed=4, lgg_fraction=0.0, **kw)


def source_files(src: Path, key: str, case: str) -> tuple[list[Path], Path]:
    """(image files, segmentation) of a case as the release names them (the Decathlon: one 4-D image)."""
    if key == "msd":
        return [src / "imagesTr" / f"{case}.nii.gz"], src / "labelsTr" / f"{case}.nii.gz"
    sep = "-" if key == "2023" else "_"
    folder = src / case
    return [folder / f"{case}{sep}{m}.nii.gz" for m in NEW_RELEASES[key]["modalities"]], folder / f"{case}{sep}seg.nii.gz"


@pytest.mark.parametrize("key", NEW_RELEASES)
def test_synth_writes_each_new_layout(tmp_path, capsys, key):
    spec = NEW_RELEASES[key]
    extra = ["--test-cases", "1"] if key == "msd" else []
    code, err = cli_run(["synth", str(tmp_path / "src"), *spec["args"], "--cases", "3", "--shape", *map(str, SHAPE),
                         "--seed", "4", "--lgg-fraction", "0", *extra], capsys)
    assert code == 0, err
    src = tmp_path / "src"
    written = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
    expected = []
    for case in spec["cases"]:
        images, seg = source_files(src, key, case)
        expected += [str(p.relative_to(src)) for p in (*images, seg)]
    if key == "msd":
        expected += ["dataset.json", "imagesTs/BRATS_901.nii.gz"]
        assert json.loads((src / "dataset.json").read_text())["modality"] == {
            "0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
        assert nib.load(src / "imagesTr" / "BRATS_001.nii.gz").shape == (*SHAPE, 4)
    assert written == sorted(expected)
    labels = [set(np.unique(np.asanyarray(nib.load(source_files(src, key, case)[1]).dataobj)).tolist())
              for case in spec["cases"]]
    assert set().union(*labels) == set(spec["labels"]), labels    # the release's labels, and only those
    # the same cases as the 2020 layout, in the release's own labels
    seg_2020 = synthesize_case(SHAPE, seed=4, index=2, lgg_fraction=0.0).seg
    seg = np.asanyarray(nib.load(source_files(src, key, spec["cases"][1])[1]).dataobj)
    to_nnunet = np.vectorize(spec["labels"].get)
    assert np.array_equal(to_nnunet(seg), np.vectorize(BRATS_TO_NNUNET.get)(seg_2020))


@pytest.mark.parametrize("key", NEW_RELEASES)
def test_convert_each_new_release(tmp_path, nnunet_env, key):
    spec = NEW_RELEASES[key]
    src = new_release(tmp_path, key, test_cases=2) if key == "msd" else new_release(tmp_path, key)
    validation = None if key == "msd" else new_release(tmp_path, key, n=2, validation=True)
    out = convert_brats(src, key, validation=validation, num_processes=1, progress=False)
    assert out == raw_root() / spec["dataset"]
    assert sorted(p.name for p in raw_root().iterdir()) == [out.name]
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["release"] == key and dataset.get("brats_year") == spec["year"]
    assert dataset["numTraining"] == 3 and dataset["regions_class_order"] == [1, 2, 3]
    assert dataset["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    for case in spec["cases"]:
        images, seg = source_files(src, key, case)
        for channel in range(4):
            written = out / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
            if key != "msd":
                assert nii_bytes(written) == nii_bytes(images[channel])      # header + data unchanged
                continue
            volume, index = nii_bytes(images[0]), spec["modalities"][channel]
            source = nib.load(images[0])
            block = int(np.prod(SHAPE)) * source.get_data_dtype().itemsize
            offset = int(source.header["vox_offset"]) if source.header["vox_offset"] else 352
            dims = np.frombuffer(volume, "<i2", 8, 40).copy()
            assert dims[0] == 4 and dims[4] == 4
            dims[0], dims[4] = 3, 1            # the only header change: the 4th dimension
            expected = volume[:40] + dims.tobytes() + volume[56:352] + volume[352 + index * block:352 + (index + 1) * block]
            assert offset == 352 and nii_bytes(written) == expected
            assert np.array_equal(np.asanyarray(nib.load(written).dataobj), np.asanyarray(source.dataobj)[..., index])
        label = nib.load(out / "labelsTr" / f"{case}.nii.gz")
        source = np.asanyarray(nib.load(seg).dataobj)
        assert label.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(label.dataobj), np.vectorize(spec["labels"].get)(source))
    test_cases = ["BRATS_901", "BRATS_902"] if key == "msd" else \
        [c.replace("0000", "9000") for c in spec["cases"][:2]]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [
        f"{c}_{ch:04d}.nii.gz" for c in test_cases for ch in range(4)]


@pytest.mark.parametrize("key", ["2018", "2019", "2020", "2021", "2023", "msd"])
def test_every_release_converts_and_exports_back_to_its_own_labels(tmp_path, nnunet_env, capsys, key):
    src = make_brats_release(tmp_path / "src", key, 3, SHAPE, seed=5, lgg_fraction=0.0)
    out = convert_brats(src, key, num_processes=1, progress=False)
    predictions = tmp_path / "pred"  # labelsTr stand in for predictions, with nnU-Net's dataset.json beside
    shutil.copytree(out / "labelsTr", predictions)
    shutil.copy(out / "dataset.json", predictions / "dataset.json")
    code, err = cli_run(["export-brats", str(predictions), str(tmp_path / "submit"), "-np", "1"], capsys)
    assert code == 0, err
    exported = sorted((tmp_path / "submit").iterdir())
    segs = sorted(p for p in src.rglob("*") if p.is_file() and ("labelsTr" in p.parts or "_seg." in p.name
                                                                  or "-seg." in p.name))
    assert len(segs) == 3
    for path, seg in zip(exported, segs):
        case = seg.parent.name if key != "msd" else seg.name[:-len(".nii.gz")]
        assert path.name == f"{case}.nii.gz"
        image, source = nib.load(path), nib.load(seg)
        assert image.get_data_dtype() == np.uint8 and np.allclose(image.affine, source.affine)
        assert np.array_equal(np.asanyarray(image.dataobj), np.asanyarray(source.dataobj))


def _drop_modality(src: Path, key: str) -> tuple[str, str]:
    case = NEW_RELEASES[key]["cases"][1]
    images, _ = source_files(src, key, case)
    if key != "msd":
        images[3].unlink()    # FLAIR
        return case, f"missing {NEW_RELEASES[key]['modalities'][3]} image"
    image = nib.load(images[0])
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj)[..., :3].copy(), image.affine), images[0])
    return case, f"shape {SHAPE + (3,)}"


def _foreign_label(src: Path, key: str) -> tuple[str, str]:
    case = NEW_RELEASES[key]["cases"][0]
    _, seg = source_files(src, key, case)
    image = nib.load(seg)
    data = np.asanyarray(image.dataobj).copy()
    bad = 3 if key == "2021" else 4     # 3 is no BraTS 2021 label, 4 none of 2023 or the Decathlon
    data[0, 0, 0] = bad
    nib.save(nib.Nifti1Image(data, image.affine), seg)
    return case, f"[{bad}]"


@pytest.mark.parametrize("key", NEW_RELEASES)
@pytest.mark.parametrize("problem", [_drop_modality, _foreign_label])
def test_bad_input_of_each_new_release(tmp_path, nnunet_env, capsys, key, problem):
    src = new_release(tmp_path, key)
    case, detail = problem(src, key)
    with pytest.raises(DruwasError) as info:
        convert_brats(src, key, num_processes=1, progress=False)
    assert case in str(info.value) and detail in str(info.value), str(info.value)
    assert list(raw_root().iterdir()) == []
    code, err = cli_run(["convert-brats", str(src), *NEW_RELEASES[key]["args"], "-np", "1"], capsys)
    assert code == 2 and case in err and "Traceback" not in err
    assert list(raw_root().iterdir()) == []


def test_a_release_with_another_releases_names_or_layout_is_refused(tmp_path, nnunet_env):
    sources = {key: new_release(tmp_path, key) for key in NEW_RELEASES}
    with pytest.raises(DruwasError, match="holds BraTS 2021 cases .* not BraTS 2023 .*check --year"):
        convert_brats(sources["2021"], 2023, progress=False)
    with pytest.raises(DruwasError, match="holds BraTS 2023 glioma .GLI. cases .* not BraTS 2021"):
        convert_brats(sources["2023"], 2021, progress=False)
    with pytest.raises(DruwasError, match="holds BraTS 2020 cases"):
        convert_brats(sources["2021"], 2021, validation=release(tmp_path, 2020, n=1, validation=True), progress=False)
    with pytest.raises(DruwasError, match="Decathlon task.*use --msd"):
        convert_brats(sources["msd"], 2023, progress=False)
    with pytest.raises(DruwasError, match="not a Decathlon task folder"):
        convert_brats(sources["2021"], "msd", progress=False)
    # a Decathlon folder of BraTS 2021 case files, and one whose dataset.json orders the channels otherwise
    for path in sorted((sources["msd"]).rglob("BRATS_*.nii.gz")):
        path.rename(path.with_name(path.name.replace("BRATS_", "BraTS2021_00")))
    with pytest.raises(DruwasError, match="holds BraTS 2021 cases"):
        convert_brats(sources["msd"], "msd", progress=False)
    other = new_release(tmp_path / "o", "msd")
    info = json.loads((other / "dataset.json").read_text())
    info["modality"] = {"0": "T1w", "1": "t1gd", "2": "T2w", "3": "FLAIR"}
    (other / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DruwasError, match="dataset.json lists channels .*T1w.*is this Task01_BrainTumour"):
        convert_brats(other, "msd", progress=False)
    with pytest.raises(DruwasError, match="--validation does not apply to the Decathlon"):
        convert_brats(other, "msd", validation=sources["2021"], progress=False)
    assert list(raw_root().iterdir()) == []
