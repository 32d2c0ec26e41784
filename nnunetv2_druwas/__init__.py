"""nnunetv2-druwas: the 3D-DRUwAS network family as an nnU-Net v2 plugin.

Light on purpose: importing the package must not import torch or nnU-Net, so that
the command line starts fast and the trainer modules stay cheap to import.
"""

__version__ = "0.1.0"
