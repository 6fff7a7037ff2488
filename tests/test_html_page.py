"""The one-page HTML report, seen as a person sees it: rendered by headless Chromium.

In CI (CI=true) a missing browser fails the test (`.ci/chromium.sh` installs Debian's chromium); elsewhere
the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from test_report_helpers import fake_top1, fill

# a browser renders the report page: the full suite's, not the fast lane's
pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1280,2000"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium is not installed (run .ci/chromium.sh or `apt-get install -y chromium`)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(reason)
    pytest.skip(reason)


def _browser(binary: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chrome-profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=120)


def test_report_page_renders_in_a_browser(sqlite_store, sqlite_url, tmp_path):
    from PIL import Image, ImageStat
    from typer.testing import CliRunner

    from harness.cli import app

    binary = _chromium()
    fill(sqlite_store, "distillation", "small", fake_top1)
    out = tmp_path / "site"
    res = CliRunner().invoke(app, ["report", "--all", "--out", str(out), "--db", sqlite_url])
    assert res.exit_code == 0, res.output
    page = out / "index.html"
    text = page.read_text(encoding="utf-8")
    # self-contained: figures are embedded, nothing is fetched
    assert "data:image/png;base64," in text and "http://" not in text.replace("http://www.w3.org", "")
    assert (out / "table3.md").exists()

    shot = tmp_path / "shot.png"
    proc = _browser(binary, tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), proc.stderr.decode(errors="replace")[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    stat = ImageStat.Stat(image)
    assert stat.stddev[0] > 20, f"the screenshot looks blank (pixel std {stat.stddev[0]:.1f})"
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50

    dom = _browser(binary, tmp_path, "--dump-dom", page.as_uri()).stdout.decode("utf-8", errors="replace")
    for n in (1, 2, 3, 4, 5, 7, 8, 10):
        assert f'id="table-{n}"' in dom, n
    assert dom.count("<img") >= 8  # Figure 1, the table charts and the training curves
    assert "71.0 ± 1.0 (n=3)" in dom and "DeiT⚗: class+distillation" in dom
