"""Speed and memory measurements, run as ``python -m nnunetv2_druwas.benchmarks.<name>``.

Benchmarks print Markdown; tests never assert speed.
"""
