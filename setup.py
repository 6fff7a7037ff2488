"""The wheel's packages: harness's own, and the top-level `reports/` and `ablations/` as `harness.shipped.*`.

`reports/` (table definitions, the paper's numbers) and `ablations/` (the shipped specs) stay where a reader of
the repository looks for them; this mapping puts them inside the installed package, where `importlib.resources`
finds them, in a wheel and in an editable install alike (`harness/shipped.py` reads them).
"""

from setuptools import find_namespace_packages, setup

SHIPPED = {"harness.shipped.reports": "reports", "harness.shipped.ablations": "ablations"}

setup(packages=find_namespace_packages(include=["harness*"]) + list(SHIPPED), package_dir=SHIPPED)
