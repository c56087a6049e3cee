"""Where a transformers model's files come from: a user's zip of a ``save_pretrained`` folder, or the hub.

A zip is data: its names are checked (no absolute paths, no ``..``), its declared sizes bounded before
anything is unpacked, and only the files a model needs (``config.json``, ``preprocessor_config.json``,
safetensors weights) are written, under fixed names, to a temporary folder the caller removes. PyTorch
pickle weights (``pytorch_model.bin``) are refused with a sentence saying how to convert them.

From the hub, files go to huggingface_hub's usual cache, only when :func:`download_hf` is called, with
``progress(done, total)`` over all the files; afterwards they are read from there with no network request.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import zipfile
import zlib
from typing import Any

from ...errors import ModelLoadError
from .download import ProgressCallback, offline
from .hub import hf_cache_dir, hub_failure_reason, hub_progress_bar, verify_blob

__all__ = ["MAX_ZIP_BYTES", "download_hf", "hf_cached", "read_json", "split_model_id", "unzip_model"]

_log = logging.getLogger("featviz")

MAX_ZIP_BYTES = 8 * 1024**3
"""Most bytes the files featviz takes from a zip may unpack to, together (8 GiB)."""
_MAX_MEMBERS = 10_000
_MAX_JSON_BYTES = 8 * 1024**2
_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_PICKLES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
CONVERT_HINT = (
    "Save it with safetensors weights: model.save_pretrained(folder, safe_serialization=True) (the default "
    "of recent transformers), then zip that folder again."
)
_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")


def read_json(path: str, what: str) -> dict[str, Any]:
    """A small JSON file as a dict; ModelLoadError in one sentence when it is not one."""
    try:
        if os.path.getsize(path) > _MAX_JSON_BYTES:
            raise ValueError("too large")
        with open(path, encoding="utf-8") as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        _log.warning("could not read %s: %r", path, exc)
        raise ModelLoadError(f"The model's {what} is not a readable JSON file.") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"The model's {what} is not a JSON object.")
    return value


# ------------------------------------------------------------------------------------------------------
# A zip of a save_pretrained folder


def _unsafe(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name)) or ".." in parts or "\\" in name


def _model_folder(names: list[str]) -> str:
    """The folder in the zip that holds config.json: its root, or one folder one level down."""
    found = sorted({name.rpartition("/")[0] for name in names
                    if name.rpartition("/")[2] == "config.json" and name.count("/") <= 1
                    and not name.startswith(("__MACOSX/", "."))})
    if not found:
        raise ModelLoadError(
            "The zip file has no config.json: zip the folder that model.save_pretrained(folder) wrote (config.json "
            "and model.safetensors, with preprocessor_config.json if there is one)."
        )
    if len(found) > 1:
        raise ModelLoadError("The zip file holds several models (several config.json files): zip one model folder.")
    return found[0]


def unzip_model(data: bytes, dest: str) -> None:
    """The model files of the zip ``data`` written to the folder ``dest``; ModelLoadError saying what is wrong."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        raise ModelLoadError("The file is not a zip file featviz can read; zip the model folder again.") from None
    if len(members) > _MAX_MEMBERS:
        raise ModelLoadError(f"The zip file holds more than {_MAX_MEMBERS} files; zip only the model folder.")
    bad = next((m.filename for m in members if _unsafe(m.filename)), None)
    if bad is not None:
        raise ModelLoadError(
            f"The zip file holds a name that points outside its folder ({bad[:80]!r}), so featviz does not open "
            "it. Zip the model folder again."
        )
    files = {m.filename: m for m in members if not m.is_dir()}
    root = _model_folder(list(files))
    prefix = f"{root}/" if root else ""
    here = {name[len(prefix):]: info for name, info in files.items() if name.startswith(prefix) and "/" not in
            name[len(prefix):]}
    wanted = ["config.json"] + [name for name in ("preprocessor_config.json", _WEIGHTS, _INDEX) if name in here]
    wanted += sorted(name for name in here if _SHARD.fullmatch(name))
    if not any(name.endswith(".safetensors") for name in wanted):
        if any(name in here for name in _PICKLES):
            raise ModelLoadError(
                "This model folder has PyTorch pickle weights (pytorch_model.bin), which featviz never opens "
                f"because loading them can run code. {CONVERT_HINT}"
            )
        raise ModelLoadError(f"The model folder in the zip has no model.safetensors weights. {CONVERT_HINT}")
    total = sum(here[name].file_size for name in wanted)
    if total > MAX_ZIP_BYTES:
        raise ModelLoadError(f"The model files unpack to more than {MAX_ZIP_BYTES >> 30} GB; featviz does not "
                             "open models that large.")
    try:
        for name in wanted:
            with archive.open(here[name]) as source, open(os.path.join(dest, name), "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, zlib.error) as exc:
        _log.warning("could not unpack the model zip: %r", exc)
        raise ModelLoadError(
            "The zip file is damaged, encrypted, or uses a kind of compression featviz cannot read; zip the model "
            "folder again."
        ) from None


# ------------------------------------------------------------------------------------------------------
# The hub


def split_model_id(model_id: str) -> tuple[str, str | None]:
    """``"google/vit-base-patch16-224@main"`` -> ``("google/vit-base-patch16-224", "main")``, checked."""
    repo, _, revision = model_id.strip().partition("@")
    if not _ID.fullmatch(repo) or ".." in repo or "--" in repo or (revision and not re.fullmatch(r"[\w./-]+", revision)):
        raise ModelLoadError(
            f"'{model_id}' is not a Hugging Face model id; write it as on its page, e.g. google/vit-base-patch16-224."
        )
    return repo, revision or None


def _complete(folder: str) -> bool:
    """True when ``folder`` has config.json and all the safetensors weights."""
    if not os.path.isfile(os.path.join(folder, "config.json")):
        return False
    if os.path.isfile(os.path.join(folder, _WEIGHTS)):
        return True
    index = os.path.join(folder, _INDEX)
    if not os.path.isfile(index):
        return False
    try:
        shards = set(read_json(index, "weights index").get("weight_map", {}).values())
    except ModelLoadError:
        return False
    return bool(shards) and all(_SHARD.fullmatch(s) and os.path.isfile(os.path.join(folder, s)) for s in shards)


def _cached_folder(repo: str, revision: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, "config.json", cache_dir=hf_cache_dir(), revision=revision)
    if not isinstance(found, str) or not os.path.isfile(found):
        return None
    folder = os.path.dirname(found)
    return folder if _complete(folder) else None


def hf_cached(model_id: str) -> bool:
    """True when ``model_id``'s config and safetensors weights are in the local cache (no network)."""
    try:
        return _cached_folder(*split_model_id(model_id)) is not None
    except ModelLoadError:
        return False


def _files_to_fetch(siblings: dict[str, int | None], model_id: str) -> list[str]:
    names = [n for n in ("preprocessor_config.json",) if n in siblings]
    if _WEIGHTS in siblings:
        return [*names, _WEIGHTS]
    shards = sorted(n for n in siblings if _SHARD.fullmatch(n))
    if _INDEX in siblings and shards:
        return [*names, _INDEX, *shards]
    if any(n in siblings for n in _PICKLES):
        raise ModelLoadError(
            f"{model_id} has only PyTorch pickle weights (pytorch_model.bin), which featviz never opens because "
            "loading them can run code; choose a model whose files include model.safetensors."
        )
    raise ModelLoadError(f"{model_id} has no model.safetensors weights on the Hugging Face hub.")


def download_hf(model_id: str, progress: ProgressCallback | None = None) -> str:
    """Make sure ``model_id``'s config.json, preprocessor_config.json and safetensors weights are in
    huggingface_hub's cache; return their folder. Nothing is fetched when they are there.

    ``progress(done, total)`` counts the bytes of all the files. Offline or failing -> ModelLoadError in one
    sentence.
    """
    repo, revision = split_model_id(model_id)
    cached = _cached_folder(repo, revision)
    if cached is not None:
        return cached
    if offline():
        raise ModelLoadError(
            f"The Hugging Face model {model_id} is not on this machine and downloads are switched off here "
            "(FEATVIZ_OFFLINE). Use the offline demo model, or a zip of the model's folder."
        )
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    cache = hf_cache_dir()
    try:
        config = hf_hub_download(repo, "config.json", revision=revision, cache_dir=cache, library_name="featviz")
        commit = os.path.basename(os.path.dirname(config))  # every later file from this same commit
        info = HfApi(library_name="featviz").model_info(repo, revision=commit, files_metadata=True)
        siblings = {s.rfilename: s.size for s in info.siblings or []}
        names = _files_to_fetch(siblings, model_id)
        total = sum(int(siblings[n] or 0) for n in names) or None
        done = 0
        for name in names:
            path = hf_hub_download(repo, name, revision=commit, cache_dir=cache, library_name="featviz",
                                   tqdm_class=hub_progress_bar(progress, done, total))
            if name.endswith(".safetensors"):
                verify_blob(path)
            done += int(siblings[name] or 0)
    except ModelLoadError:
        raise
    except GatedRepoError:
        raise ModelLoadError(
            f"{model_id} is gated on the Hugging Face hub: accept its terms on its page and log in with "
            "'hf auth login', then download again."
        ) from None
    except RepositoryNotFoundError:
        raise ModelLoadError(f"The Hugging Face hub has no model {repo} (or it is private).") from None
    except EntryNotFoundError:
        raise ModelLoadError(f"{model_id} has no config.json: it is not a transformers model.") from None
    except Exception as exc:  # noqa: BLE001 - network failures of every kind
        _log.warning("download of %s failed: %r", model_id, exc)
        raise ModelLoadError(
            f"Could not download {model_id} from the Hugging Face hub: {hub_failure_reason(exc)}. Check the "
            "internet connection, or use the offline demo model or a zip of the model's folder."
        ) from None
    return os.path.dirname(config)
