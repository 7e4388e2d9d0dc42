"""`manage.py bench_review`: the review desk measured through its own HTTP endpoints.

Pending review items are decided the way the desk decides them: it opens (the next two items,
claimed), then each decision is one request that records it and claims the next item, whose photo
comes with it (scaled for the screen). First one reviewer works through the queue, then 4 at once
(threads, each with its own database connection and session). Each request goes through Django's
whole stack in-process (middleware, session, permissions, CSRF check, view), so its time is the
server's time without the network.

The items are real development photos with predictions written directly (the model is not what
is measured here), in a throw-away database; second opinions are switched off so that every item
takes exactly one decision and "decided twice" can only mean two reviewers got the same item.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from batches import ingest
from batches.models import BatchRun, Image, Prediction
from reviews.desk_api import DESK_PHOTO_HEIGHT
from reviews.models import ReviewDecision, ReviewItem

from .benchmark import dev_photo_paths, throwaway_database

DESK = "/admin/reviews/desk/"
TRANSACTION_STATEMENTS = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


def make_items(paths: list[Path], version: str, seed: int) -> list[int]:
    """One pending review item per photo, predicted as its folder's class with a middling confidence."""
    rng = random.Random(seed)
    classes = sorted({path.parent.name for path in paths})
    run = BatchRun.objects.create(trigger="command", model_version=version, total=len(paths))
    predictions = []
    for path in paths:
        image = Image.objects.filter(original_name=path.name).first()
        if image is None:
            with open(path, "rb") as stream:
                image, _ = ingest.register_image(stream, path.name, Image.Source.INBOX)
        others = rng.sample([name for name in classes if name != path.parent.name], 2)
        confidence = round(rng.uniform(0.4, 0.85), 4)
        rest = 1 - confidence
        predictions.append(
            Prediction(
                image=image,
                batch_run=run,
                model_version=version,
                predicted_class=path.parent.name,
                confidence=confidence,
                threshold=0.9,
                probabilities={path.parent.name: confidence, others[0]: 0.7 * rest, others[1]: 0.3 * rest},
                review_reason="low_confidence",
            )
        )
    created = Prediction.objects.bulk_create(predictions)
    ReviewItem.objects.bulk_create(ReviewItem(prediction=p, reason="low_confidence") for p in created)
    return list(ReviewItem.objects.filter(prediction__batch_run=run).values_list("id", flat=True))


def answer_for(item: dict, rng: random.Random) -> str:
    """Mostly the predicted class, sometimes the second guess, now and then not one of ours."""
    roll = rng.random()
    if roll < 0.85:
        return item["predicted_class"]
    if roll < 0.95:
        return item["top"][1][0]
    return "none_of_our_categories" if roll < 0.98 else "unusable"


class DeskReviewer:
    """One reviewer at the desk: a logged-in session, two items held, one request per decision."""

    def __init__(self, user, seed: int):
        self.client = Client(enforce_csrf_checks=True)
        self.client.force_login(user)
        self.client.get(DESK)  # the page: its CSRF cookie
        self.token = self.client.cookies["csrftoken"].value
        self.rng = random.Random(seed)
        self.milliseconds: list[float] = []
        self.queries: list[int] = []  # SQL statements, as Django counts them in a test
        self.round_trips: list[int] = []  # with BEGIN and COMMIT of its two transactions
        self.decided: list[int] = []

    def post(self, path: str, body: dict) -> dict:
        response = self.client.post(
            f"{DESK}api/{path}", json.dumps(body), content_type="application/json", HTTP_X_CSRFTOKEN=self.token
        )
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.content[:200]!r}")
        return response.json()

    def work(self) -> None:
        held = self.post("next/", {"count": 2, "resume": True})["items"]
        while held:
            item = held.pop(0)
            body = {
                "answer": answer_for(item, self.rng),
                "seconds": round(self.rng.uniform(1, 4), 1),
                "next": {"count": 1 if len(held) < 2 else 0, "exclude": [other["id"] for other in held]},
            }
            connection.queries_log.clear()  # a bounded deque: once full, CaptureQueriesContext counts nothing
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                answer = self.post(f"items/{item['id']}/decide/", body)
                self.milliseconds.append(1000 * (time.perf_counter() - started))
            statements = [q["sql"].split(None, 1)[0].upper() for q in queries]
            self.queries.append(sum(word not in TRANSACTION_STATEMENTS for word in statements))
            self.round_trips.append(len(statements))
            self.decided.append(item["id"])
            held.extend(answer["items"])


def phase(users, item_ids: list[int], seed: int) -> dict:
    """The reviewers work through the queue at once; figures of their decision requests."""
    reviewers = [DeskReviewer(user, seed + i) for i, user in enumerate(users)]
    errors = []

    def work(reviewer: DeskReviewer) -> None:
        try:
            reviewer.work()
        except Exception as exc:  # reported in the document, not lost in a thread
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(reviewer,)) for reviewer in reviewers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    milliseconds = sorted(ms for reviewer in reviewers for ms in reviewer.milliseconds)
    queries = [count for reviewer in reviewers for count in reviewer.queries]
    round_trips = [count for reviewer in reviewers for count in reviewer.round_trips]
    counts = ReviewDecision.objects.filter(item_id__in=item_ids).values_list("item_id", flat=True)
    per_item: dict[int, int] = {}
    for item_id in counts:
        per_item[item_id] = per_item.get(item_id, 0) + 1
    return {
        "reviewers": len(users),
        "items": len(item_ids),
        "decisions": len(milliseconds),
        "median_ms": round(statistics.median(milliseconds), 2) if milliseconds else None,
        "p95_ms": round(milliseconds[int(0.95 * (len(milliseconds) - 1))], 2) if milliseconds else None,
        "queries_per_decision": spread(queries),
        "round_trips_per_decision": spread(round_trips),
        "decisions_per_second": round(len(milliseconds) / seconds, 1),
        "per_reviewer": [len(reviewer.decided) for reviewer in reviewers],
        "decided_twice": sum(1 for n in per_item.values() if n > 1),
        "left_undecided": len(item_ids) - len(per_item),
        "errors": errors,
    }


def spread(values: list[int]) -> dict | None:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def run(count: int, progress: Callable[[str], None]) -> dict:
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    paths = dev_photo_paths(count)
    work = Path(settings.VAR_DIR) / "bench"
    work.mkdir(parents=True, exist_ok=True)
    media = Path(tempfile.mkdtemp(prefix="media-review-", dir=work))
    hosts = [*settings.ALLOWED_HOSTS, "testserver"]
    document: dict = {}
    try:
        with (
            override_settings(MEDIA_ROOT=str(media), ALLOWED_HOSTS=hosts, REVIEW_SECOND_OPINION_RATE=0.0),
            throwaway_database(),
        ):
            call_command("setup_roles", verbosity=0)
            users = []
            for i in range(4):
                user = User.objects.create_user(f"bench-reviewer-{i}", is_staff=True)
                user.groups.add(Group.objects.get(name="reviewers"))
                users.append(user)
            for name, reviewers, version in (
                ("one_reviewer", users[:1], "bench-1"),
                ("four_reviewers", users, "bench-2"),
            ):
                progress(f"{name}: {len(paths)} pending items")
                item_ids = make_items(paths, version, seed=len(reviewers))
                document[name] = phase(reviewers, item_ids, seed=len(reviewers) * 100)
                progress(f"{name}: {document[name]}")
    finally:
        shutil.rmtree(media, ignore_errors=True)
    document["config"] = {
        "photos": f"{len(paths)} development photos ({settings.TRAIN_DATA_DIR[0] if settings.TRAIN_DATA_DIR else ''})",
        "desk_photo_height": DESK_PHOTO_HEIGHT,
        "database": connection.vendor,
        "second_opinions": "off (every item takes one decision)",
        "claim_seconds": settings.REVIEW_CLAIM_SECONDS,
    }
    return document
