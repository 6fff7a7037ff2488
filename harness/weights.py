"""Published weights that runs name by timm pretrained tag: which ones, whether this machine has them, fetching.

A teacher or a fine-tune may start from weights published with timm, named by tag
(`distillation.teacher.pretrained: regnety_160.deit_in1k`, `finetune.pretrained: deit_base_patch16_224.fb_in1k`).
timm keeps them on the Hugging Face hub as `timm/<tag>`, in the hub cache (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub). Compute nodes are often offline: fetch the weights of a spec where there is network
(`harness weights fetch SPEC`, into a cache the nodes share), and check a plan before launching it
(`check_weights(runs)`). The trainer loads the file `fetch` finds (downloading it only when it is missing and
the hub is reachable) and records its SHA-256.

A file is trusted only when it is what its name promises: the hub cache names each blob by its hash (the
SHA-256 of a large, LFS file; the git SHA-1 of a small one), so an altered or truncated file is found before
any run uses it, and `harness weights fetch` downloads it again. And the runs of one tag use one file: a
cached file whose SHA-256 differs from the one an earlier run of the tag recorded stops the launch.

Listing and checking import neither torch nor timm.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

from harness.config import check_pretrained_tag
from harness.words import first_line

# the files timm loads a tag's weights from, in its order of preference
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(RuntimeError):
    """Named weights that are not here and cannot be fetched; the message is one line."""


def hub_cache() -> Path:
    """The hub cache as the environment names it now (huggingface_hub reads it once, at its import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # huggingface_hub's name, then its older one
        if os.environ.get(name):
            return Path(os.environ[name])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_repo(tag: str) -> str:
    """The hub repository of a timm pretrained tag (timm's `hf_hub_id` for every tag the specs name); a tag
    that is not one is a WeightsError (one line), never the hub's validation traceback."""
    try:
        check_pretrained_tag(tag, "weights")
    except ValueError as exc:
        raise WeightsError(str(exc)) from None
    return f"timm/{tag}"


# the roles a run's named weights play; the trainer records `<role>_weights` (the tag) and
# `<role>_weights_sha256` in the run's info
WEIGHT_ROLES = ("teacher", "finetune")


def named_weights(runs: Iterable) -> list[str]:
    """The pretrained tags that planned runs (`harness.spec.PlannedRun`) name, each once, sorted."""
    tags = set()
    for run in runs:
        teacher, finetune = run.config.distillation.teacher, run.config.finetune
        if run.config.distillation.kind != "none" and teacher is not None and teacher.pretrained:
            tags.add(teacher.pretrained)
        if finetune is not None and finetune.pretrained:
            tags.add(finetune.pretrained)
    return sorted(tags)


def cached_file(tag: str) -> Path | None:
    """The tag's weights file in the hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILES:
        found = try_to_load_from_cache(hub_repo(tag), filename, cache_dir=hub_cache())
        if isinstance(found, str):
            return Path(found)
    return None


def hub_unreachable() -> str | None:
    """Why the hub cannot be reached from here, in a few words, or None. One connection attempt (huggingface_hub
    itself retries for ~25 s per file, printing each retry); behind a proxy the proxy decides, so None."""
    from huggingface_hub import constants

    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=5).close()
    except OSError as exc:
        return f"cannot reach the Hugging Face hub ({constants.ENDPOINT}) from here: {exc.strerror or exc}"
    return None


def _downloadable(tag: str) -> bool:
    if offline() or hub_unreachable():
        return False
    from huggingface_hub import file_exists

    try:
        return any(file_exists(hub_repo(tag), filename) for filename in HUB_FILES)
    except Exception:  # no network, no such repository, a proxy error: not downloadable from here
        return False


def missing_line(tag: str) -> str:
    why = "the hub is offline (HF_HUB_OFFLINE)" if offline() else f"{hub_repo(tag)} cannot be reached"
    return (f"missing weights {tag}: not in the hub cache {hub_cache()} and {why}; "
            f"fetch them where there is network: harness weights fetch {tag}")


def file_sha256(path: Path) -> str:
    return _digests(path, "sha256")["sha256"]


def _digests(path: Path, *kinds: str) -> dict[str, str]:
    """The file's digests of the given kinds ("sha256"; "git-sha1": git's blob hash), read once."""
    hashes = {kind: hashlib.sha256() if kind == "sha256" else hashlib.sha1() for kind in kinds}
    if "git-sha1" in hashes:
        hashes["git-sha1"].update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for digest in hashes.values():
                digest.update(block)
    return {kind: digest.hexdigest() for kind, digest in hashes.items()}


def promised_digest(path: Path) -> tuple[str, str] | None:
    """What the hub cache's name for the file promises: ("sha256", hex) for an LFS blob, ("git-sha1", hex) for
    a small one; None for a file that is not a blob of a hub cache (a copy where links are not allowed)."""
    blob = path.resolve()
    if blob.parent.name != "blobs":
        return None
    if re.fullmatch(r"[0-9a-f]{64}", blob.name):
        return "sha256", blob.name
    if re.fullmatch(r"[0-9a-f]{40}", blob.name):
        return "git-sha1", blob.name
    return None


def verified_sha256(tag: str, path: Path) -> str:
    """The SHA-256 of a tag's cached file, once it is proven to be what its blob's name promises; a
    WeightsError (one line) when it is not: altered, truncated, or a broken download."""
    promised = promised_digest(path)
    digests = _digests(path, "sha256", *([promised[0]] if promised and promised[0] != "sha256" else []))
    if promised is not None and digests[promised[0]] != promised[1]:
        raise WeightsError(f"corrupt weights {tag}: {path} has {promised[0].upper()} {digests[promised[0]][:16]}, "
                           f"not the {promised[1][:16]} its hub-cache blob is named by (altered or truncated); "
                           f"fetch them again: harness weights fetch {tag}")
    return digests["sha256"]


def recorded_weights(records: Iterable) -> dict[str, dict[str, str]]:
    """tag -> {SHA-256 -> the short hash of the last run that recorded it} over stored runs
    (`harness.store.records.RunRecord`: the trainer records `<role>_weights` and `<role>_weights_sha256`)."""
    found: dict[str, dict[str, str]] = {}
    for record in records:
        for role in WEIGHT_ROLES:
            tag, sha = record.info.get(f"{role}_weights"), record.info.get(f"{role}_weights_sha256")
            if tag and sha:
                found.setdefault(tag, {})[sha] = record.short
    return found


def check_weights(runs: Iterable, records: Iterable = ()) -> list[str]:
    """One line per named weight that is neither in the hub cache nor downloadable from here, whose cached file
    is corrupt, or whose cached file is not the one earlier runs of the tag (stored `records`) used; empty when
    all are present and trusted."""
    recorded = recorded_weights(records)
    lines = []
    for tag in named_weights(runs):
        path = cached_file(tag)
        if path is None:
            if not _downloadable(tag):
                lines.append(missing_line(tag))
            continue
        try:
            sha = verified_sha256(tag, path)
        except WeightsError as exc:
            lines.append(str(exc))
            continue
        others = [(other, run) for other, run in recorded.get(tag, {}).items() if other != sha]
        if others:
            other, run = others[-1]
            lines.append(f"weights {tag} changed: the hub cache's file {path} has SHA-256 {sha[:16]}, run {run} "
                         f"used the file with SHA-256 {other[:16]}; restore that file, or the runs of {tag} "
                         "would mix two sets of weights")
    return lines


def fetch(tag: str, repair: bool = False) -> Path:
    """A tag's weights in the hub cache, downloaded when missing, and checked against their blob's name: a
    corrupt file is a WeightsError, or, with `repair` (`harness weights fetch`), downloaded again."""
    cached = cached_file(tag)
    if cached is not None:
        try:
            verified_sha256(tag, cached)
            return cached
        except WeightsError as exc:
            if not repair:
                raise
            if offline():
                raise WeightsError(f"{exc}; the hub is offline (HF_HUB_OFFLINE): they cannot be fetched again "
                                   "from here") from None
    elif offline():
        raise WeightsError(missing_line(tag))
    path = _download(tag, force=cached is not None)
    verified_sha256(tag, path)
    return path


def _download(tag: str, force: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    unreachable = hub_unreachable()
    if unreachable:
        raise WeightsError(f"{tag}: {unreachable}; fetch it where there is network, into a hub cache this machine "
                           f"reads (HF_HUB_CACHE; here {hub_cache()})")
    for filename in HUB_FILES:
        try:
            return Path(hf_hub_download(hub_repo(tag), filename, cache_dir=hub_cache(), force_download=force))
        except LocalEntryNotFoundError as exc:  # the hub stopped answering: not a file the repository lacks
            raise WeightsError(f"{tag}: the Hugging Face hub did not answer ({first_line(exc)}); fetch it where "
                               f"there is network") from None
        except EntryNotFoundError:
            continue
        except Exception as exc:  # network, authentication, no such repository: one line for the command
            raise WeightsError(f"cannot fetch {tag} from {hub_repo(tag)}: {type(exc).__name__}: "
                               f"{first_line(exc)}") from exc
    raise WeightsError(f"{hub_repo(tag)} holds none of {', '.join(HUB_FILES)}")


def spec_weights(spec: str, profile: str | None, max_runs: int | None) -> list[str]:
    """The tags a spec file's runs name under a profile (a pretrained tag given instead of a file: itself); a
    spec is read as `harness run` reads it, bounded by `max_runs`."""
    from harness.spec import load_spec, spec_runs  # the trainer imports this module, and no spec code

    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return named_weights(spec_runs(load_spec(path), profile, max_runs=max_runs))
    try:
        check_pretrained_tag(spec, "a weights name")
    except ValueError as exc:
        raise WeightsError(f"{spec} is neither a spec file nor a pretrained tag: {exc}") from None
    return [spec]
