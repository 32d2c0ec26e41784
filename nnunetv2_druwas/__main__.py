"""``python -m nnunetv2_druwas`` is the ``nnunetv2_druwas`` command."""
import sys

from nnunetv2_druwas.cli import main

sys.exit(main())
