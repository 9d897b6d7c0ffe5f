"""Resolve a model reference (a local directory or a hub repo id with optional ``@revision``) to a directory.

Downloads go through huggingface_hub into the standard cache, so HF_HOME, HF_HUB_CACHE, HF_ENDPOINT,
HF_TOKEN and HF_HUB_OFFLINE behave as in every other Hugging Face tool. Only the files inference needs
are fetched (no remote code, no images from the model card).
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from dsocr_cli.errors import ModelError

DEFAULT_MODEL = "deepseek-ai/DeepSeek-OCR"
MODEL_FILES = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "processor_config.json",
]


def split_reference(reference: str) -> tuple[str, str | None]:
    """``owner/name@rev`` -> (``owner/name``, ``rev``)."""
    repo, sep, revision = reference.partition("@")
    return repo, (revision or None) if sep else None


def offline_requested(offline: bool) -> bool:
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def resolve_model(reference: str = DEFAULT_MODEL, offline: bool = False) -> Path:
    """A local directory as is; otherwise the cached (or freshly downloaded) snapshot of a hub repo."""
    local = Path(reference).expanduser()
    if local.is_dir():
        return local
    repo, revision = split_reference(reference)
    where = f"{repo}@{revision}" if revision else repo
    offline = offline_requested(offline)
    try:
        path = snapshot_download(repo, revision=revision, allow_patterns=MODEL_FILES, local_files_only=offline)
    except LocalEntryNotFoundError:
        if offline:
            raise ModelError(
                f"{where}: not in the local cache and offline mode is on (run `dsocr download {where}` while online)"
            ) from None
        raise ModelError(
            f"{where}: cannot reach the Hugging Face hub and the model is not cached "
            "(check the network or HF_ENDPOINT, or pass --model DIR)"
        ) from None
    except GatedRepoError:
        raise ModelError(f"{where}: access denied (gated or private repo; set HF_TOKEN or run `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"{where}: repository not found on the hub (or private: set HF_TOKEN); not a local directory either"
        ) from None
    except RevisionNotFoundError:
        raise ModelError(f"{where}: revision {revision!r} not found") from None
    except HFValidationError:
        raise ModelError(f"{reference}: neither a model directory nor a hub repo id (owner/name[@revision])") from None
    except HfHubHTTPError as exc:
        raise ModelError(f"{where}: download failed ({str(exc).splitlines()[0]})") from None
    except OSError as exc:
        raise ModelError(f"{where}: cannot write to the model cache ({exc.strerror or exc})") from None
    return Path(path)
