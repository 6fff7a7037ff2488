"""Published weights that runs name by timm pretrained tag: which ones, whether this machine has them, fetching.

A teacher or a fine-tune may start from weights published with timm, named by tag
(`distillation.teacher.pretrained: regnety_160.deit_in1k`, `finetune.pretrained: deit_base_patch16_224.fb_in1k`).
timm keeps them on the Hugging Face hub as `timm/<tag>`, in the hub cache (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub). Compute nodes are often offline: fetch the weights of a spec where there is network
(`harness weights fetch SPEC`, into a cache the nodes share), and check a plan before launching it
(`check_weights(runs)`). The trainer loads the file `fetch` finds (downloading it only when it is missing and
the hub is reachable) and records its SHA-256.

Listing and checking import neither torch nor timm.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Iterable
from urllib.parse import urlparse

# the files timm loads a tag's weights from, in its order of preference
HUB_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(RuntimeError):
    """Named weights that are not here and cannot be fetched; the message is one line."""


def hub_cache() -> Path:
    """The hub cache as the environment names it now (huggingface_hub reads it once, at its import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_repo(tag: str) -> str:
    """The hub repository of a timm pretrained tag (timm's `hf_hub_id` for every tag the specs name)."""
    return f"timm/{tag}"


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


def check_weights(runs: Iterable) -> list[str]:
    """One line per named weight that is neither in the hub cache nor downloadable from here; empty when all
    are present."""
    return [missing_line(tag) for tag in named_weights(runs) if cached_file(tag) is None and not _downloadable(tag)]


def fetch(tag: str) -> Path:
    """Download a tag's weights into the hub cache (nothing to do when they are there); their path."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    cached = cached_file(tag)
    if cached is not None:
        return cached
    if offline():
        raise WeightsError(missing_line(tag))
    unreachable = hub_unreachable()
    if unreachable:
        raise WeightsError(f"{tag}: {unreachable}; fetch it where there is network, into a hub cache this machine "
                           f"reads (HF_HOME)")
    for filename in HUB_FILES:
        try:
            return Path(hf_hub_download(hub_repo(tag), filename, cache_dir=hub_cache()))
        except LocalEntryNotFoundError as exc:  # the hub stopped answering: not a file the repository lacks
            raise WeightsError(f"{tag}: the Hugging Face hub did not answer ({_first_line(exc)}); fetch it where "
                               f"there is network") from None
        except EntryNotFoundError:
            continue
        except Exception as exc:  # network, authentication, no such repository: one line for the command
            raise WeightsError(f"cannot fetch {tag} from {hub_repo(tag)}: {type(exc).__name__}: "
                               f"{_first_line(exc)}") from exc
    raise WeightsError(f"{hub_repo(tag)} holds none of {', '.join(HUB_FILES)}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


def spec_weights(spec: str, profile: str | None = None) -> list[str]:
    """The tags a spec file's runs name under a profile (a pretrained tag given instead of a file: itself)."""
    from harness.config import check_pretrained_tag
    from harness.spec import expand, load_spec

    path = Path(spec)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return named_weights(expand(load_spec(path), profile))
    try:
        check_pretrained_tag(spec, "a weights name")
    except ValueError as exc:
        raise WeightsError(f"{spec} is neither a spec file nor a pretrained tag: {exc}") from None
    return [spec]
