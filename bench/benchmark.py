"""`manage.py bench`: the batch path measured against its two essential costs.

It drives the product's own entry points (registration, a batch run, the engine) and the served
classifier; torch and the runtimes stay behind the classifier's interface.

For each photo set, in one process and on the same photos:
- pipeline: the real batch path (claim, read, decode, preprocess, forward, write predictions
  and review items, commit), from the start of the run to its last commit;
- model_only: the forward pass alone on ready tensors, at the same forward batch size;
- decode_only: reading + decoding + preprocessing alone, in the same thread pool
  (both the median of three passes);
- efficiency: pipeline / ideal, ideal = 1 / (1/decode_only + 1/model_only);
- naive: the same code with one photo per chunk and per forward pass, full-size decoding with
  PIL and PyTorch eager (fp32 on the CPU).
- vs_reference_b0: the pipeline against a plain fp32 EfficientNet-B0 forward pass (PyTorch
  eager, channels_last, batch 32) measured in the same process: a yardstick that moves with
  the machine, so that runs on different (or busy) machines compare.
With `--compare ALIAS`, the version under that alias (a candidate at another input size, say)
gets the same figures on the same photos, beside production's.
The photos are registered in a throw-away database (Django's test database machinery), so
nothing of the product's own data is touched.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection
from django.test.utils import override_settings
from PIL import Image as PILImage

from batches import engine, ingest, services
from batches.models import BatchRun, Image
from classifier.datasets import folder_labels
from classifier.imaging import Rejection

LARGE_SIZE = (1280, 960)
REPEATS = 3  # decode-only and model-only are the median of this many passes
REFERENCE_BATCH = 32  # the fp32 EfficientNet-B0 yardstick's forward batch


def dev_photo_paths(count: int) -> list[Path]:
    """The first `count` development photos, taking classes in turn (a stable, mixed set)."""
    root = Path(settings.TRAIN_DATA_DIR[0]) if settings.TRAIN_DATA_DIR else None
    if root is None or not root.is_dir():
        raise FileNotFoundError(f"the first folder of TRAIN_DATA_DIR ({root}) is not a directory")
    per_class = [sorted(p for p in folder.glob("*.jpg")) for folder in sorted(root.iterdir()) if folder.is_dir()]
    paths = []
    for row in range(max(len(files) for files in per_class)):
        paths.extend(files[row] for files in per_class if row < len(files))
    return paths[:count]


def large_photos(sources: list[Path], folder: Path, seed: int = 0) -> list[Path]:
    """1280x960 JPEGs made from the development photos: upscaled, with sensor-like noise so
    they compress (and decode) like camera photos. Made once (on every core) and kept in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    targets = [folder / f"{index:05d}-{source.stem}.jpg" for index, source in enumerate(sources)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(make_large_photo, sources, targets, [seed + index for index in range(len(sources))]))
    return targets


def make_large_photo(source: Path, target: Path, seed: int) -> None:
    if target.exists():
        return
    rng = np.random.default_rng(seed)
    with PILImage.open(source) as photo:
        canvas = PILImage.new("RGB", LARGE_SIZE, "white")
        picture = photo.convert("RGB")
        scale = min(LARGE_SIZE[0] / picture.width, LARGE_SIZE[1] / picture.height)
        picture = picture.resize((int(picture.width * scale), int(picture.height * scale)), PILImage.BICUBIC)
        canvas.paste(picture, ((LARGE_SIZE[0] - picture.width) // 2, (LARGE_SIZE[1] - picture.height) // 2))
    pixels = np.asarray(canvas, dtype=np.int16) + rng.normal(0, 6, (LARGE_SIZE[1], LARGE_SIZE[0], 3))
    tmp = target.with_suffix(".tmp")
    PILImage.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(tmp, format="JPEG", quality=90)
    os.replace(tmp, target)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# Peak resident memory of each pipeline run, measured from its own start (VmHWM reset).
PIPELINE_PEAKS: list[float] = []


def reset_peak_rss() -> None:
    """Start the kernel's peak-RSS counter (VmHWM) afresh, so that the batch path's peak is not
    that of the set-up before it (making and registering photos)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux: the peak then includes the set-up


def current_peak_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


@contextlib.contextmanager
def throwaway_database():
    """A fresh, migrated database beside the configured one, dropped afterwards."""
    old_name = connection.settings_dict["NAME"]
    test = connection.settings_dict.setdefault("TEST", {})
    configured = test.get("NAME")
    if connection.vendor == "sqlite":
        # A file, not Django's shared in-memory database: the decoder threads never touch it,
        # but the run must see the same data from every connection.
        test["NAME"] = str(Path(settings.VAR_DIR) / "bench" / "bench.sqlite3")
    else:
        test["NAME"] = f"bench_{old_name}"[:63]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        test["NAME"] = configured


def timed(work: Callable[[], object], repeats: int = 1) -> float:
    """Median wall time of `repeats` calls (this machine is noisy)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds))


def pipeline_seconds(paths: list[Path], version: str) -> tuple[float, int]:
    """Register the photos (not timed), then one batch run over them, start to last commit."""
    for path in paths:
        with open(path, "rb") as stream:
            ingest.register_image(stream, path.name, Image.Source.INBOX)
    reset_peak_rss()
    started = time.perf_counter()
    run = services.start_batch_run(BatchRun.Trigger.COMMAND)  # every photo without a result: the nightly path
    while engine.process_run(run.pk):
        pass
    seconds = time.perf_counter() - started
    PIPELINE_PEAKS.append(current_peak_rss_mb())
    run.refresh_from_db()
    if run.model_version != version or not run.is_finished:
        raise RuntimeError(f"benchmark run {run.pk} did not finish with version {version}: {run.status}")
    return seconds, run.total


def measure_set(paths: list[Path], classifier) -> dict:
    """Pipeline, model-only and decode-only speeds of one photo set."""
    n = len(paths)
    pipeline, total = pipeline_seconds(paths, classifier.version)
    decode = timed(lambda: decode_all(paths, classifier), REPEATS)
    model, forwarded = model_seconds(paths, classifier)
    result = {
        "n": n,
        "pipeline_img_s": total / pipeline,
        "model_only_img_s": forwarded / model,
        "decode_only_img_s": n / decode,
    }
    ideal = 1 / (1 / result["decode_only_img_s"] + 1 / result["model_only_img_s"])
    result["ideal_img_s"] = ideal
    result["efficiency"] = result["pipeline_img_s"] / ideal
    return rounded(result)


def decode_all(paths: list[Path], classifier) -> None:
    """Read, decode and preprocess the photos chunk by chunk, as the batch path does."""
    for chunk in chunks(paths):
        classifier.decode_many(chunk)
    classifier.synchronise()  # GPU decoding is asynchronous


def rounded(figures: dict) -> dict:
    return {key: round(value, 3) if isinstance(value, float) else value for key, value in figures.items()}


def chunks(paths: list[Path]) -> list[list[Path]]:
    """The photos in chunks of BATCH_CHUNK_SIZE, as the batch path takes them (bounded memory)."""
    size = settings.BATCH_CHUNK_SIZE
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def model_seconds(paths: list[Path], classifier) -> tuple[float, int]:
    """Median time of the forward passes alone over all photos (decoded chunk by chunk, untimed)."""
    totals = []
    forwarded = 0
    for _ in range(REPEATS):
        seconds, forwarded = 0.0, 0
        for chunk in chunks(paths):
            tensors = [t for t in classifier.decode_many(chunk) if not isinstance(t, Rejection)]
            seconds += timed(lambda tensors=tensors: list(classifier.logits(tensors)))
            forwarded += len(tensors)
        totals.append(seconds)
    return float(np.median(totals)), forwarded


def naive_speed(paths: list[Path], classifier) -> tuple[float, int]:
    """The obvious implementation through the same code: one photo per chunk and per forward
    pass, decoded at full size, PyTorch eager fp32. Its photos get fresh copies (one changed byte) so that the
    run has work to do."""
    from classifier import inference

    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for path in paths:
            copy = Path(tmp) / f"naive-{path.name}"
            copy.write_bytes(path.read_bytes() + b"\0")  # after the JPEG end marker: the same picture
            copies.append(copy)
        with override_settings(
            BATCH_CHUNK_SIZE=1, INFERENCE_BATCH=1, INFERENCE_RUNTIME="torch", INFERENCE_DECODE="pil"
        ):
            naive = inference.get_classifier(classifier.version)  # PyTorch eager, PIL
            draft_size, naive.photos.draft_size = naive.photos.draft_size, None  # decoded at full size
            try:
                seconds, total = pipeline_seconds(copies, classifier.version)
            finally:
                naive.photos.draft_size = draft_size
    inference.get_classifier(classifier.version)  # the benchmarked runtime again
    return total / seconds, total


def configuration(classifier) -> dict:
    return {
        **classifier.describe(),
        "decode_threads": settings.INFERENCE_THREADS or os.cpu_count(),
        "chunk_size": settings.BATCH_CHUNK_SIZE,
        "progress_steps": settings.BATCH_PROGRESS_STEPS,  # a run under steps x chunk_size photos uses smaller chunks
        "allocator": os.environ.get("LD_PRELOAD") or "glibc",
        "database": connection.vendor,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }


def run(
    count: int,
    naive_count: int,
    accuracy: bool,
    progress: Callable[[str], None],
    compare: tuple[str, ...] = (),
    reference_photos: int = 256,
) -> dict:
    """The production alias's version (MODEL_ALIAS) measured in full; each alias in `compare` (e.g.
    a candidate trained at another input size, under `staging`) on the same photos beside it,
    without the naive path; and the plain fp32 EfficientNet-B0 reference, all in one process."""
    from classifier import backbones

    work = Path(settings.VAR_DIR) / "bench"
    small = dev_photo_paths(count)
    progress(f"making {len(small)} 1280x960 photos under {work} (once)")
    large = large_photos(small, work / "photos-1280x960")
    sets = (("photos_60x80", small), ("photos_1280x960", large))
    media = Path(tempfile.mkdtemp(prefix="media-", dir=work))
    compared: dict = {}
    try:
        with override_settings(MEDIA_ROOT=str(media)):
            with throwaway_database():
                document = measure_version(sets, naive_count, progress)
            for alias in compare:  # each in a database of its own: every photo is new work again
                with override_settings(MODEL_ALIAS=alias), throwaway_database():
                    progress(f"the version under {alias!r}")
                    compared[alias] = measure_version(sets, 0, progress)
    finally:
        shutil.rmtree(media, ignore_errors=True)
    progress(f"reference: {backbones.REFERENCE['network']} fp32, batch {REFERENCE_BATCH}")
    reference = backbones.reference_speed(batch=REFERENCE_BATCH, photos=reference_photos)
    document["reference_b0"] = {**backbones.REFERENCE, "batch": REFERENCE_BATCH, "img_s": round(reference, 3)}
    document["peak_rss_mb_whole_bench"] = round(peak_rss_mb(), 1)
    folders = [Path(folder) for folder in settings.EVAL_DATA_DIR if Path(folder).is_dir()]
    for figures in [document, *compared.values()]:
        for name, _ in sets:
            figures[name]["vs_reference_b0"] = round(figures[name]["pipeline_img_s"] / reference, 3)
        figures["val_accuracy"] = None
        if accuracy and folders:
            figures |= accuracy_figures(figures["config"]["model_version"], folders, progress)
    if compare:
        document["compared"] = compared
    return document


def measure_version(sets, naive_count: int, progress: Callable[[str], None]) -> dict:
    """Every figure of the version the alias (MODEL_ALIAS) points at, on each photo set."""
    from classifier import inference

    version, _ = inference.resolve_production()
    classifier = inference.get_classifier(version)
    # The first forward passes pay one-off costs (ONNX Runtime's and cuDNN's set-up), not per photo.
    small, large = (paths for _, paths in sets)
    classifier.classify_files(small[: classifier.forward_batch] + large[:2])
    classifier.synchronise()
    PIPELINE_PEAKS.clear()
    document: dict = {}
    for name, paths in sets:
        progress(f"version {version}, {name}: {len(paths)} photos")
        document[name] = measure_set(paths, classifier)
        progress(f"{name}: {document[name]}")
    # The batch path's own peak (both sets), not the set-up's nor the naive path's.
    document["peak_rss_mb"] = round(max(PIPELINE_PEAKS), 1)
    if naive_count:
        for name, paths in sets:
            progress(f"{name}: naive path on {min(naive_count, len(paths))} photos")
            naive, naive_n = naive_speed(paths[:naive_count], classifier)
            document[name] |= rounded({"naive_img_s": naive, "naive_n": naive_n})
    document["device"] = str(classifier.device)
    document["config"] = configuration(classifier)
    return document


def accuracy_figures(version: str, folders: list[Path], progress: Callable[[str], None]) -> dict:
    """Top-1 of the version as benchmarked on each folder and, when its runtime is not PyTorch,
    of the same version through PyTorch fp32, so that what a faster runtime costs is beside it."""
    from classifier import evaluation, inference

    classifier = inference.get_classifier(version)
    figures: dict = {"val_accuracy": {}}
    for label, val in zip(folder_labels(folders), folders):
        progress(f"version {version}: accuracy on {val}")
        with contextlib.redirect_stdout(io.StringIO()):
            figures["val_accuracy"][label] = round(evaluation.evaluate(classifier, val)["accuracy"], 4)
            if classifier.runtime != "torch":
                with override_settings(INFERENCE_RUNTIME="torch"):
                    reference = inference.get_classifier(version)
                    fp32 = round(evaluation.evaluate(reference, val)["accuracy"], 4)
                figures.setdefault("val_accuracy_fp32", {})[label] = fp32
    return figures
