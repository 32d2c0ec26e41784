"""The DRUwAS nnU-Net trainers, for ``nnUNet_extTrainer`` (see ``nnunetv2_druwas env``).

nnU-Net imports every module of this folder and looks trainer classes up by name, so this
module only exposes the named classes; their behaviour lives in ``nnunetv2_druwas.training``
and their names in ``nnunetv2_druwas.variants`` (``nnunetv2_druwas trainers`` lists them).
Repeats, ``<trainer>_repeat<k>`` of any DRUwAS trainer or nnU-Net trainer class, are built when
nnU-Net asks for them (the module ``__getattr__``, PEP 562).
Keep it light: an import error here hides every trainer in the folder.
"""
from nnunetv2_druwas.training import __getattr__, trainer_classes  # noqa: F401  (__getattr__: the repeats)

globals().update(trainer_classes())
__all__ = sorted(trainer_classes())
