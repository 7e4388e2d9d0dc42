"""Photos into the preprocessed tensors of a model version, in a thread pool, ahead of the
forward passes: one by one with PIL (`pil`), or a chunk at a time as tensors (`torchvision`:
nvjpeg on a GPU, see `tensor_decode`)."""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from django.conf import settings

from . import backbones, imaging, tensor_decode
from .imaging import FailureReason, Rejection

logger = logging.getLogger(__name__)

Source = str | os.PathLike | bytes
Decoded = torch.Tensor | Rejection

_pool: ThreadPoolExecutor | None = None


class Decoding:
    """Photos queued for decoding. Its owner can only wait for it (a classifier does) or cancel
    it (a batch that stops with a chunk claimed ahead)."""

    def __init__(self, futures: list[Future]):
        self._futures = futures

    def results(self) -> list[Decoded]:
        """One item per photo, in order: a uint8 tensor, or the photo's Rejection."""
        return [future.result() for future in self._futures]

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()


class PhotoDecoder:
    """Decodes and preprocesses photos for one model version (its `preprocessing` config)."""

    def __init__(self, preprocessing: dict, device: torch.device, kind: str = "pil"):
        self.preprocessing = preprocessing
        self.device = device
        self.kind = kind  # "pil" or "torchvision" (INFERENCE_DECODE)
        self.transform = backbones.serving_transform(preprocessing)
        # Big JPEGs are decoded at a reduced scale (imaging.open_image); None decodes them whole.
        self.draft_size = backbones.draft_size(preprocessing)

    def load(self, source: Source) -> torch.Tensor:
        """One photo as a uint8 tensor (normalised per batch by the classifier); raises Rejection."""
        return self.transform(imaging.open_photo(source, draft_size=self.draft_size))

    def start(self, sources: list[Source]) -> Decoding:
        """Queue the photos in the thread pool."""
        pool = decoder_pool()
        if self.kind == "torchvision":
            futures = [Future() for _ in sources]
            pool.submit(self._decode_chunk, list(sources), futures)
            return Decoding(futures)
        return Decoding([pool.submit(self._try_load, source) for source in sources])

    def decode_many(self, sources: list[Source]) -> list[Decoded]:
        return self.start(sources).results()

    def _try_load(self, source: Source) -> Decoded:
        try:
            return self.load(source)
        except Rejection as rejection:
            return rejection
        except Exception as exc:  # a decoder bug on one photo must not fail its chunk-mates
            logger.exception("unexpected error decoding a photo")
            return Rejection(FailureReason.CORRUPT, f"{type(exc).__name__}: {exc}")

    def _decode_chunk(self, sources: list[Source], futures: list[Future]) -> None:
        limits = tensor_decode.Limits(settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS, settings.MIN_IMAGE_SIDE)
        try:
            items = tensor_decode.decode_chunk(
                sources, self.preprocessing, self.device, limits, fallback=self._try_load
            )
        except Exception:  # e.g. the device out of memory: the chunk still gets decoded
            logger.exception("decoding a chunk as tensors failed; decoding it photo by photo")
            items = [self._try_load(source) for source in sources]
        for future, item in zip(futures, items):
            future.set_result(item)


def decoder_pool() -> ThreadPoolExecutor:
    """The process's decoder threads (INFERENCE_THREADS, default one per core)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=settings.INFERENCE_THREADS or os.cpu_count() or 1)
    return _pool
