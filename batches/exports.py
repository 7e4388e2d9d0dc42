"""Results of a run as rows for CSV and JSON Lines (the download link and export_results)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import TextIO

from .models import BatchRun, Image

COLUMNS = [
    "image_id",
    "original_name",
    "sha256",
    "outcome",
    "predicted_class",
    "confidence",
    "top3",
    "needs_review",
    "review_reason",
    "review_status",
    "final_class",
    "failure_reason",
    "failure_detail",
    "model_version",
]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def result_rows(run: BatchRun) -> Iterator[dict]:
    """One row per image of the run, in image order, streamed from the database; then one per file
    of its upload that was refused before being stored (outcome `refused`, no image id)."""
    version = run.model_version
    for image in run.result_images().iterator(chunk_size=2000):
        yield image_row(image, version)
    for refusal in run.refused:
        row = dict.fromkeys(COLUMNS, "")
        row.update(
            original_name=refusal["name"],
            outcome="refused",
            failure_reason=refusal["reason"],
            failure_detail=refusal["detail"],
            model_version=version,
        )
        yield row


def image_row(image: Image, version: str) -> dict:
    row = dict.fromkeys(COLUMNS, "")
    row.update(image_id=image.pk, original_name=image.original_name, sha256=image.sha256, model_version=version)
    if image.hits:
        prediction = image.hits[0]
        review = getattr(prediction, "review", None)  # doubtful, or audited
        answer = review.answer if review else None
        row.update(
            outcome="predicted",
            predicted_class=prediction.predicted_class,
            confidence=round(prediction.confidence, 4),
            top3=";".join(f"{name}:{p:.3f}" for name, p in prediction.top(3)),
            needs_review="no" if prediction.auto_accepted else "yes",
            review_reason=review.reason if review else "",
            review_status=review.state if review else "",
            # Reviewed: the reviewers' class (empty when none of ours); accepted: the prediction;
            # still waiting for a reviewer, or reviewers disagree: nothing yet.
            final_class=answer
            if answer is not None
            else (prediction.predicted_class if prediction.auto_accepted else ""),
        )
    elif image.fails:
        failure = image.fails[0]
        row.update(outcome="failed", failure_reason=failure.reason, failure_detail=failure.detail)
    else:
        row["outcome"] = "pending"
    return row


class _Echo:
    """A file-like object whose write() returns the line, so csv can feed a generator."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows) -> Iterator[str]:
    writer = csv.DictWriter(_Echo(), fieldnames=COLUMNS)
    yield writer.writeheader()
    for row in rows:
        yield writer.writerow({key: _safe_cell(value) for key, value in row.items()})


def jsonl_lines(rows) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"


def write_csv(rows, stream: TextIO) -> None:
    stream.writelines(csv_lines(rows))


def write_jsonl(rows, stream: TextIO) -> None:
    stream.writelines(jsonl_lines(rows))


def _safe_cell(value):
    """Keep spreadsheets from running a cell as a formula (a file name like '=HYPERLINK(...)')."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
