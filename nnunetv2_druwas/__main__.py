"""``python -m nnunetv2_druwas`` is the ``nnunetv2_druwas`` command."""
import sys

from nnunetv2_druwas.cli import build_parser, main

__all__ = ["build_parser", "main"]   # build_parser: the parser of this module (see tests/test_docs.py)

if __name__ == "__main__":
    sys.exit(main())
