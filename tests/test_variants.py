"""Trainer names: repeats and nnU-Net's own trainers (the names every part of the harness parses)."""
from __future__ import annotations

import pytest

from nnunetv2_druwas.variants import reference_label, repeat_trainer_name, split_repeat


@pytest.mark.parametrize("name, expected", [
    ("nnUNetTrainerDRUwAS", ("nnUNetTrainerDRUwAS", 0)),
    ("nnUNetTrainerDRUwAS_repeat1", ("nnUNetTrainerDRUwAS", 1)),
    ("nnUNetTrainerDRUwASSwish_nnUNetRecipe_repeat12", ("nnUNetTrainerDRUwASSwish_nnUNetRecipe", 12)),
    ("nnUNetTrainer_repeat3", ("nnUNetTrainer", 3)),
    ("nnUNetTrainer_repeat0", ("nnUNetTrainer_repeat0", 0)),      # repeat 0 has no suffix
    ("nnUNetTrainer_repeat02", ("nnUNetTrainer_repeat02", 0)),    # not a repeat number
    ("_repeat2", ("_repeat2", 0)),                                 # no trainer before it
    ("nnUNetTrainer_repeatX", ("nnUNetTrainer_repeatX", 0)),
])
def test_split_repeat(name, expected):
    assert split_repeat(name) == expected


def test_repeat_names_round_trip():
    for repeat in range(0, 5):
        name = repeat_trainer_name("nnUNetTrainerDRUwAS_SA", repeat)
        assert name == ("nnUNetTrainerDRUwAS_SA" if repeat == 0 else f"nnUNetTrainerDRUwAS_SA_repeat{repeat}")
        assert split_repeat(name) == ("nnUNetTrainerDRUwAS_SA", repeat)
    with pytest.raises(ValueError):
        repeat_trainer_name("nnUNetTrainer", -1)


def test_reference_labels():
    assert reference_label("nnUNetTrainer", "nnUNetPlans") == "nnU-Net (default)"
    assert reference_label("nnUNetTrainer_repeat2", "nnUNetPlans") == "nnU-Net (default)"
    assert reference_label("nnUNetTrainer", "nnUNetResEncUNetMPlans") == "nnU-Net ResEnc M"
    assert reference_label("nnUNetTrainerNoMirroring", "nnUNetPlans") == "nnUNetTrainerNoMirroring (nnUNetPlans)"
