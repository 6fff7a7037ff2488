#!/usr/bin/env bash
# CI: build the wheel, install it into a clean venv and use it from an empty folder, as a lab would: Table 3's
# definitions, a shipped spec by name and by path, and a one-epoch run of the quick profile, all from the wheel.
#
# The clean venv installs the wheel only (--no-deps): torch and the other dependencies come from the test venv,
# through a folder of links to its site-packages that leaves out every trace of the harness (the editable
# install, its finder and metadata), so `import harness` can only find the wheel; `pip check` proves the wheel's
# declared dependencies are all there. The harness never comes from the checkout: the commands run elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/dist" .
rm -rf build  # setuptools' staging folder, not part of the checkout
wheel=$(ls "$work"/dist/deit_harness-*.whl)
unzip -Z1 "$wheel" > "$work/contents"
grep -qx 'harness/shipped/reports/tables/table3.yaml' "$work/contents" || { echo "the wheel lacks reports/"; exit 1; }
grep -qx 'harness/shipped/ablations/distillation.yaml' "$work/contents" || { echo "the wheel lacks ablations/"; exit 1; }

deps=$("$PY" -c "import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))")
mkdir "$work/deps"
for entry in "$deps"/*; do
  case $(basename "$entry") in
    harness|deit_harness*|__editable__*|*.pth) ;;
    *) ln -s "$entry" "$work/deps/" ;;
  esac
done
"$(dirname "$("$PY" -c 'import sys; print(sys._base_executable)')")/python3" -m venv "$work/venv"
venv_site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$work/deps" > "$venv_site/harness_deps.pth"
# venv's own old setuptools would shadow the one the dependencies need (torch asks for a newer one)
"$work/venv/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y setuptools
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "$wheel"
"$work/venv/bin/python" -m pip check --disable-pip-version-check

mkdir "$work/empty"
cd "$work/empty"
export PATH="$work/venv/bin:$PATH" HF_HUB_OFFLINE=1
python -c "import harness, sys; assert harness.__file__.startswith(sys.prefix), harness.__file__"
installed=$(python -c "from harness import shipped; print(shipped.ablations_dir() / 'distillation.yaml')")
case $installed in "$work/venv"/*) ;; *) echo "shipped specs read from $installed, not the wheel"; exit 1;; esac

echo "== a shipped spec by name, and by path"
harness run distillation --profile quick --dry-run
harness run "$installed" --profile quick --dry-run
echo "== one epoch of the quick profile"
sed 's/^\(      schedule\.epochs:\) 24$/\1 1/' "$installed" > distillation.yaml
grep -q '^      schedule\.epochs: 1$' distillation.yaml || { echo "the quick profile's epochs moved: fix this script"; exit 1; }
harness run distillation.yaml --profile quick --variants no_distillation --executor local
echo "== Table 3, from the wheel's definitions and paper numbers"
harness report --table 3 --profile quick
harness report --table 3
echo "wheel: ok"
