"""Named pretrained weights: listing the ones a plan names, checking the hub cache offline, fetching by spec."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess
import sys
from pathlib import Path

import pytest

from harness import weights
from harness.config import RunConfig
from tests.hub_cache import add_weights, hub_cache, timm_weights  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
PRESENT, MISSING = "test_resnet.r160_in1k", "test_vit.r160_in1k"


def planned_run(teacher: str | None = None, finetune: str | None = None):
    from harness.spec import PlannedRun

    raw = {"model": {"name": "deit_tiny_patch4_32"}, "data": {"name": "digits", "img_size": 32}}
    if teacher:
        raw["distillation"] = {"kind": "hard", "teacher": {"model": teacher.split(".")[0], "pretrained": teacher}}
    if finetune:
        raw["finetune"] = {"pretrained": finetune}
    return PlannedRun(hash="0" * 64, config=RunConfig.model_validate(raw), spec="t", profile=None, variant="v",
                      label="v", coords={}, seed=0)


def test_named_weights_are_the_teachers_and_finetune_sources():
    runs = [planned_run(teacher=PRESENT), planned_run(finetune=MISSING), planned_run(teacher=PRESENT), planned_run()]
    assert weights.named_weights(runs) == [PRESENT, MISSING]


def test_check_finds_cached_weights_and_names_the_missing_in_one_line(hub_cache):
    add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    runs = [planned_run(teacher=PRESENT), planned_run(finetune=MISSING)]
    missing = weights.check_weights(runs)
    assert len(missing) == 1 and "\n" not in missing[0]
    assert MISSING in missing[0] and f"harness weights fetch {MISSING}" in missing[0] and str(hub_cache) in missing[0]
    assert weights.check_weights(runs[:1]) == []
    assert weights.fetch(PRESENT).resolve().parent.name == "blobs"


def test_every_tag_the_specs_name_is_where_timm_loads_it_from():
    import timm
    from timm.models import get_pretrained_cfg

    from harness.spec import expand, load_spec

    tags = {PRESENT, MISSING}
    for spec in sorted((ROOT / "ablations").glob("*.yaml")):
        loaded = load_spec(spec)
        for profile in [None, *loaded.spec.profiles]:
            tags.update(weights.named_weights(expand(loaded, profile)))
    assert {"regnety_160.deit_in1k", "deit_base_patch16_224.fb_in1k"} <= tags
    published = set(timm.list_pretrained())
    for tag in tags:
        cfg = get_pretrained_cfg(tag)
        assert tag in published and cfg.hf_hub_id == weights.hub_repo(tag), tag
        assert cfg.hf_hub_filename in (None, *weights.HUB_FILES), tag


@pytest.mark.slow
def test_listing_and_checking_import_no_torch(hub_cache):
    code = ("import sys\n"
            "from harness.spec import expand, load_spec\n"
            "from harness.weights import check_weights\n"
            "print(check_weights(expand(load_spec('ablations/distillation.yaml'))))\n"
            "bad = [m for m in ('torch', 'timm') if m in sys.modules]\n"
            "assert not bad, bad\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(hub_cache.parent))
    # spec validation reads timm's model names from a cache written once (that first call may import timm)
    subprocess.run([sys.executable, "-c", "from harness.registry import timm_model_names; timm_model_names()"],
                   check=True, env=env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert "missing weights regnety_160.deit_in1k" in out.stdout


def test_cli_fetch_by_spec_and_its_one_line_error(hub_cache, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: w\nbase:\n  data: {name: digits, img_size: 32}\n  model: {name: deit_tiny_patch4_32}\n"
                    "variants:\n  a: {set: {distillation.kind: hard, distillation.teacher.model: test_resnet,"
                    f" distillation.teacher.pretrained: {PRESENT}}}}}\n"
                    f"profiles:\n  more:\n    variants:\n      a: {{set: {{finetune.pretrained: {MISSING}}}}}\n")
    res = CliRunner().invoke(app, ["weights", "fetch", str(spec)])
    assert res.exit_code == 0, res.output
    assert PRESENT in res.output and str(hub_cache) in res.output
    res = CliRunner().invoke(app, ["weights", "fetch", str(spec), "--profile", "more"])
    assert res.exit_code == 2 and PRESENT in res.stdout
    assert res.stderr.startswith(f"error: missing weights {MISSING}") and len(res.stderr.strip().splitlines()) == 1
    res = CliRunner().invoke(app, ["weights", "fetch", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1


TAUGHT = f"""
name: taught
base:
  data: {{name: synthetic, train_subset: 64, img_size: 32, num_workers: 0}}
  model.name: deit_tiny_patch4_32
  device: cpu
  batch_size: 32
  eval_batch_size: 64
  schedule: {{epochs: 1, warmup_epochs: 0}}
  augment: {{auto_augment: null, random_erasing: 0.0, repeated_aug: false, mixup: 0.0, cutmix: 0.0}}
  throughput: {{protocols: []}}
  distillation: {{kind: hard, teacher: {{model: test_resnet, pretrained: {PRESENT}}}}}
seeds: [0]
"""


def corrupt(path: Path) -> None:
    """Change the cached file's bytes in place (its blob keeps the name of the old content)."""
    blob = path.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))


def test_a_corrupt_cached_file_is_never_used_and_fetch_says_so_in_one_line(hub_cache):
    from typer.testing import CliRunner

    from harness.cli import app

    path = add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    assert weights.fetch(PRESENT) == path
    corrupt(path)
    [line] = weights.check_weights([planned_run(teacher=PRESENT)])
    assert line.startswith(f"corrupt weights {PRESENT}: {path}") and f"harness weights fetch {PRESENT}" in line
    with pytest.raises(weights.WeightsError, match="corrupt weights"):
        weights.fetch(PRESENT)  # what the trainer calls: it never loads the altered file
    res = CliRunner().invoke(app, ["weights", "fetch", PRESENT])
    assert res.exit_code == 2 and res.stdout == "", res.output
    assert res.stderr.startswith(f"error: corrupt weights {PRESENT}") and "offline" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_a_small_file_is_checked_against_its_git_blob_name(tmp_path):
    import hashlib

    blobs = tmp_path / "blobs"
    blobs.mkdir()
    content = b'{"architecture": "test_resnet"}\n'
    path = blobs / hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    path.write_bytes(content)
    assert weights.verified_sha256(PRESENT, path) == hashlib.sha256(content).hexdigest()
    path.write_bytes(content + b" ")
    with pytest.raises(weights.WeightsError, match="GIT-SHA1"):
        weights.verified_sha256(PRESENT, path)


@pytest.mark.parametrize("tag", ["a/b.c", "a..b", "a.b.c", "a b.c", ".c", "a.", "x" * 95 + ".y", "a--b.c"])
def test_a_malformed_tag_is_one_line_and_exit_2(tag, hub_cache):
    from typer.testing import CliRunner

    from harness.cli import app

    done = CliRunner().invoke(app, ["weights", "fetch", tag])
    assert done.exit_code == 2, done.output
    assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    with pytest.raises(weights.WeightsError, match="not a timm pretrained tag"):
        weights.fetch(tag)


@pytest.mark.slow
def test_weights_other_than_an_earlier_run_used_stop_the_launch_naming_the_tag_and_the_run(hub_cache, tmp_path):
    """Run A recorded the SHA-256 of the teacher's file; the cache then holds another, sound file for the tag
    (the hub's weights changed and were fetched again): the next launch of the tag stops at plan time."""
    from harness.launch import LaunchOptions, launch
    from harness.spec import expand, load_spec
    from harness.store import open_store
    from tests.tiny_spec import harness_env

    path = add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    spec = tmp_path / "taught.yaml"
    spec.write_text(TAUGHT)
    loaded = load_spec(spec)
    db_url, out = f"sqlite:///{tmp_path / 'harness.db'}", tmp_path / "out"
    store = open_store(db_url)
    result = launch(loaded, expand(loaded), store, db_url, LaunchOptions(executor="debug", output=out, threads=1),
                    progress=lambda line: None)
    assert result.ok, [f.error for f in result.failures]
    [first] = store.runs()
    assert first.info["teacher_weights_sha256"] == weights.file_sha256(path)

    path.unlink()  # the snapshot now links to another blob, as after the hub's weights changed
    add_weights(hub_cache, PRESENT, {k: v + 1 for k, v in timm_weights(PRESENT).items() if v.is_floating_point()})
    spec.write_text(TAUGHT.replace("seeds: [0]", "seeds: [0, 1]"))
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(out), "--db", db_url,
                           "--executor", "debug"], capture_output=True, text=True, cwd=ROOT, env=harness_env())
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"weights {PRESENT} changed" in line and f"run {first.short} used" in line, line
    assert [r.hash for r in store.runs()] == [first.hash]  # nothing registered, nothing trained

    corrupt(weights.cached_file(PRESENT))  # and an altered file is found the same way
    done = subprocess.run([sys.executable, "-m", "harness", "run", str(spec), "--output", str(out), "--db", db_url,
                           "--executor", "debug"], capture_output=True, text=True, cwd=ROOT, env=harness_env())
    assert done.returncode == 2 and f"corrupt weights {PRESENT}" in done.stderr, done.stdout + done.stderr


class FakeHub:
    """A hub endpoint on localhost serving one file as the Hugging Face hub does (HEAD with the commit, ETag and
    size headers huggingface_hub reads, then GET), so a real `hf_hub_download` runs without the network."""

    def __init__(self, tag: str, content: bytes, commit: str):
        import hashlib
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        path = f"/timm/{tag}/resolve/main/model.safetensors"
        headers = {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
                   "Content-Length": str(len(content))}
        self.gets = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                if self.path.split("?")[0] != path:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if body:
                    hub.gets += 1
                    self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_weights_fetch_downloads_a_corrupt_file_again(hub_cache):
    import hashlib

    path = add_weights(hub_cache, PRESENT, timm_weights(PRESENT))
    sound = path.read_bytes()
    corrupt(path)
    hub = FakeHub(PRESENT, sound, commit=hashlib.sha1(PRESENT.encode()).hexdigest())
    try:
        env = dict(os.environ, HF_HUB_OFFLINE="0", HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1")
        done = subprocess.run([sys.executable, "-m", "harness", "weights", "fetch", PRESENT], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=120)
    finally:
        hub.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert hub.gets == 1 and path.read_bytes() == sound
    assert weights.check_weights([planned_run(teacher=PRESENT)]) == []


def test_offline_fetch_names_the_hub_cache_variable_huggingface_hub_reads_as_the_readme_does(hub_cache, monkeypatch):
    """A machine without network: the error names HF_HUB_CACHE (what the README says, and what huggingface_hub
    reads for its hub cache) and the folder it is now, never HF_HOME."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "hub_unreachable", lambda: "cannot reach the Hugging Face hub from here: no route")
    with pytest.raises(weights.WeightsError) as caught:
        weights.fetch(MISSING)
    message = str(caught.value)
    assert f"(HF_HUB_CACHE; here {hub_cache})" in message and "HF_HOME" not in message, message
    assert "HF_HUB_CACHE" in (Path(__file__).resolve().parents[1] / "README.md").read_text()
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HUGGINGFACE_HUB_CACHE", str(hub_cache / "older-name"))
    assert weights.hub_cache() == hub_cache / "older-name"
