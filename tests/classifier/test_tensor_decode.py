"""Decoding a chunk as tensors (INFERENCE_DECODE=torchvision): nvjpeg and a batched resize on a
GPU. The same code runs on the CPU with libjpeg-turbo, which is what these tests exercise; the
last one runs it on a CUDA device where there is one."""

import io

import pytest
import torch
from django.conf import settings
from django.test import override_settings
from PIL import Image as PILImage

from classifier import backbones, inference, tensor_decode
from classifier.imaging import FailureReason, Rejection, open_photo
from tests.helpers import BAD_INPUTS, dev_photos


def limits() -> tensor_decode.Limits:
    return tensor_decode.Limits(settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS, settings.MIN_IMAGE_SIDE)


def pil_reference(prep: dict):
    """The PIL path for one photo: a uint8 tensor, or the refusal's reason."""
    transform = backbones.serving_transform(prep)

    def load(source):
        try:
            return transform(open_photo(source, draft_size=backbones.draft_size(prep)))
        except Rejection as exc:
            return exc.reason

    return load


def mean_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.cpu().float() - b.cpu().float()).abs().mean())


def big_jpeg(path) -> bytes:
    """A 960x1280 camera-sized JPEG made from a development photo."""
    out = io.BytesIO()
    PILImage.open(path).convert("RGB").resize((960, 1280), PILImage.Resampling.BICUBIC).save(out, "JPEG", quality=90)
    return out.getvalue()


def with_bogus_huffman_table(data: bytes) -> bytes:
    """A JPEG whose header reads fine but whose Huffman table no decoder accepts."""
    broken = bytearray(data)
    table = broken.find(b"\xff\xc4")
    broken[table + 5 : table + 21] = b"\xff" * 16
    return bytes(broken)


@pytest.mark.parametrize("resize", ["pad", "crop"])
def test_it_gives_the_pixels_the_pil_path_gives(resize):
    prep = backbones.data_config("lite0", resize)
    photos = [path for path, _ in dev_photos("val", per_class=2)]
    sources = photos + [big_jpeg(photos[0])]
    reference = pil_reference(prep)
    decoded = tensor_decode.decode_chunk(sources, prep, torch.device("cpu"), limits(), fallback=reference)
    for source, tensor in zip(sources, decoded):
        assert tensor.dtype == torch.uint8 and tensor.shape == (3, 224, 224)
        # Antialiased bicubic resizes in torch and in PIL agree to a fraction of a grey level;
        # the big photo differs a little more because PIL decodes it at a quarter of its size.
        assert mean_difference(tensor, reference(source)) < 0.5


def test_every_bad_input_gets_the_outcome_of_the_pil_path():
    prep = backbones.data_config("lite0", "pad")
    reference = pil_reference(prep)
    files = sorted(p for p in BAD_INPUTS.iterdir() if p.name != "README.md")
    taken = []
    decoded = tensor_decode.decode_chunk(
        files, prep, torch.device("cpu"), limits(), fallback=lambda source: taken.append(source) or reference(source)
    )
    for path, outcome in zip(files, decoded):
        expected = reference(path)
        if isinstance(expected, str):
            assert outcome == expected, path.name
        else:
            assert mean_difference(outcome, expected) < 0.5, path.name
    # Refused, rotated, CMYK, grey and trailing-data files all went to the PIL path...
    names = {path.name for path in taken}
    assert {"truncated.jpg", "exif_orientation_6.jpg", "cmyk.jpg", "jpeg_with_trailing_html.jpg"} <= names
    assert {"zero_bytes.jpg", "jpeg_header_65000x65000.jpg", "decompression_bomb_30000x30000.png"} <= names
    # ... and plain photos did not.
    assert "valid_control.jpg" not in names and "photo with spaces.jpg" not in names


def test_a_jpeg_the_decoder_refuses_costs_only_itself():
    prep = backbones.data_config("lite0", "pad")
    reference = pil_reference(prep)
    first, second = [path.read_bytes() for path, _ in dev_photos("val", per_class=1)[:2]]
    broken = with_bogus_huffman_table(first)
    assert tensor_decode.plain_jpeg(broken, limits())  # its header passes: the batched call fails
    decoded = tensor_decode.decode_chunk(
        [first, broken, second], prep, torch.device("cpu"), limits(), fallback=reference
    )
    assert decoded[1] == FailureReason.CORRUPT.value
    assert mean_difference(decoded[0], reference(first)) < 0.5
    assert mean_difference(decoded[2], reference(second)) < 0.5


def test_the_classifier_predicts_the_same_through_either_decoder(trained_model):
    photos = [path for path, _ in dev_photos("val", per_class=2)] + [BAD_INPUTS / "truncated.jpg"]
    with override_settings(INFERENCE_DECODE="pil"):
        by_pil = inference.get_classifier().classify_files(photos)
    with override_settings(INFERENCE_DECODE="torchvision"):
        classifier = inference.get_classifier()
        assert classifier.decoder == "torchvision"
        by_tensors = classifier.classify_files(photos)
        assert inference.loaded_state()["decoder"] == "torchvision"
    *pil_predictions, pil_rejection = by_pil
    *tensor_predictions, tensor_rejection = by_tensors
    assert tensor_rejection == pil_rejection
    for a, b in zip(tensor_predictions, pil_predictions):
        # Pixels a fraction of a grey level apart: probabilities within a few points, and the
        # same class unless the two best were nearly tied (this small test model has many ties).
        assert max(abs(a.probabilities[name] - b.probabilities[name]) for name in a.probabilities) < 0.05
        (best, p1), (_, p2) = b.top(2)
        if p1 - p2 > 0.1:
            assert a.predicted_class == best


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA device: nvjpeg decoding is checked by bin/gpu-check on a GPU machine",
)
def test_it_decodes_on_the_gpu_like_on_the_cpu():
    prep = backbones.data_config("lite0", "pad")
    photos = [path for path, _ in dev_photos("val", per_class=2)]
    sources = photos + [big_jpeg(photos[0]), BAD_INPUTS / "cmyk.jpg", BAD_INPUTS / "truncated.jpg"]
    reference = pil_reference(prep)
    on_gpu = tensor_decode.decode_chunk(sources, prep, torch.device("cuda"), limits(), fallback=reference)
    on_cpu = tensor_decode.decode_chunk(sources, prep, torch.device("cpu"), limits(), fallback=reference)
    assert on_gpu[-1] == on_cpu[-1] == FailureReason.TRUNCATED.value
    for gpu, cpu in zip(on_gpu[:-1], on_cpu[:-1]):
        assert gpu.device.type == "cuda"
        assert mean_difference(gpu, cpu) < 1.0  # nvjpeg's IDCT and upsampling differ slightly from libjpeg's
