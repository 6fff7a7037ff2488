"""Data, not code: the table definitions and the paper's numbers, shipped as `harness.shipped.reports`.

This file makes the folder a regular package, which an editable install (`pip install -e .`) needs to map it
into `harness.shipped` (see setup.py).
"""
