#!/usr/bin/env bash
# Run HERE (where PyPI is reachable), before borrowing a GPU machine: downloads into benchmarks/gpu/wheels/
# (ignored by git; name it in the device call's `carry`) the Python 3.12 manylinux x86-64 wheels of exactly the
# packages in benchmarks/gpu/wheels.txt -- the harness's dependencies that the GPU image lacks -- and removes
# any other wheel there. Then it checks that the set is closed: every requirement of every wheel (for Python
# 3.12 on Linux, extras aside) is either in the set or among the packages the image already has.
#
#   benchmarks/gpu/prepare.sh [PYTHON]     # PYTHON: any Python with pip (default python3)
set -euo pipefail
cd "$(dirname "$0")"
PY=${1:-python3}
DEST=wheels
mkdir -p "$DEST"
mapfile -t PINS < <(grep -v '^\s*#' wheels.txt | grep -v '^\s*$')

"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d "$DEST" "${PINS[@]}"

"$PY" - "$DEST" "${PINS[@]}" <<'PY'
"""Keep exactly the pinned wheels, and check that their requirements are met by the set or by the image."""
import re, sys, zipfile
from pathlib import Path
from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name, parse_wheel_filename

# what the GPU image already holds among the requirements of these wheels (its full list: KINDS.md of the
# device notes); typing-extensions is also pinned, for images whose copy is older than pydantic needs
IMAGE_HAS = {"cloudpickle", "markupsafe", "typing-extensions"}
ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}

dest, pins = Path(sys.argv[1]), sys.argv[2:]
wanted = {canonicalize_name(p.split("==")[0]): p.split("==")[1] for p in pins}
have = {}
for wheel in sorted(dest.glob("*.whl")):
    name, version, _, _ = parse_wheel_filename(wheel.name)
    if wanted.get(name) != str(version):
        wheel.unlink()  # another package, or another version of one: two versions stop the install there
        print(f"removed {wheel.name} (not in wheels.txt)")
        continue
    have[name] = wheel
missing = sorted(set(wanted) - set(have))
if missing:
    sys.exit(f"no wheel downloaded for: {', '.join(missing)}")
problems = []
for name, wheel in have.items():
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate(ENV):
            continue  # an extra, another Python or another platform
        dep = canonicalize_name(req.name)
        if dep in IMAGE_HAS:
            continue
        if dep not in have:
            problems.append(f"{name} needs {req}, which is neither in wheels.txt nor in the image")
        elif not req.specifier.contains(wanted[dep], prereleases=True):
            problems.append(f"{name} needs {req}, but wheels.txt pins {dep}=={wanted[dep]}")
if problems:
    sys.exit("\n".join(problems))
size = sum(w.stat().st_size for w in have.values()) / 2**20
print(f"{len(have)} wheels in {dest.resolve()} ({size:.1f} MiB); their requirements are met by the set or the image")
PY
