"""Data, not code: the ablation specs the package ships, as `harness.shipped.ablations`.

This file makes the folder a regular package, which an editable install (`pip install -e .`) needs to map it
into `harness.shipped` (see setup.py).
"""
