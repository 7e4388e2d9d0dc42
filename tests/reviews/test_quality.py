"""Audits of automatic decisions and the live precision estimated from them: the sampling, the
Wilson interval, the Quality page, GET /api/quality/ and the gauges in /metrics."""

import hashlib

from django.test import Client, TestCase, override_settings
from rest_framework.authtoken.models import Token

from batches.models import BatchRun, Image, Prediction
from reviews import services
from reviews.models import ReviewItem
from reviews.quality import audit_precision, wilson_interval
from tests.helpers import make_user, review_item


class WilsonIntervalTests(TestCase):
    def test_it_matches_known_intervals(self):
        low, high = wilson_interval(95, 100)
        assert (round(low, 4), round(high, 4)) == (0.8882, 0.9785)
        low, high = wilson_interval(10, 10)  # all right, few: far from certain
        assert (round(low, 4), high) == (0.7225, 1.0)
        low, high = wilson_interval(0, 4)
        assert (low, round(high, 4)) == (0.0, 0.4899)
        assert wilson_interval(0, 0) == (None, None)


class AuditSamplingTests(TestCase):
    def predictions(self, count, version):
        run = BatchRun.objects.create(trigger="schedule", model_version=version)
        images = Image.objects.bulk_create(
            Image(
                sha256=hashlib.sha256(f"photo {i}".encode()).hexdigest(),
                file=f"x/{i}.jpg",
                source="inbox",
                size_bytes=1,
            )
            for i in range(count)
        )
        Prediction.objects.bulk_create(
            Prediction(
                image=image,
                batch_run=run,
                model_version=version,
                predicted_class="tops",
                confidence=0.99,
                probabilities={"tops": 0.99, "shirts": 0.01},
            )
            for image in images
        )
        return Prediction.objects.filter(batch_run=run)

    def test_a_share_of_automatic_decisions_is_audited_the_same_on_every_rerun(self):
        predictions = self.predictions(2000, "7")
        services.queue_for_review(predictions)
        audited = set(ReviewItem.objects.filter(reason="audit").values_list("prediction__image__sha256", flat=True))
        assert 15 <= len(audited) <= 65  # 2% of 2,000 is 40 (binomial sd 6.3; within 4 sd)
        assert audited == {
            p.image.sha256 for p in predictions.select_related("image") if services.audit_sampled(p.image.sha256, "7")
        }
        services.queue_for_review(predictions)  # a rerun queues nothing new
        assert ReviewItem.objects.count() == len(audited)
        # Another version samples other photos.
        other = {sha for sha in audited if services.audit_sampled(sha, "8")}
        assert len(other) < len(audited) / 2

    def test_the_share_audited_is_near_the_rate(self):
        shas = [hashlib.sha256(f"photo {i}".encode()).hexdigest() for i in range(2000)]
        for rate in (0.02, 0.1):
            with override_settings(AUDIT_SAMPLE_RATE=rate):
                drawn = sum(services.audit_sampled(sha, version) for sha in shas for version in "12345")
            expected, sd = 10_000 * rate, (10_000 * rate * (1 - rate)) ** 0.5
            assert abs(drawn - expected) < 4 * sd, (rate, drawn)

    @override_settings(AUDIT_SAMPLE_RATE=0.0)
    def test_a_rate_of_zero_audits_nothing(self):
        services.queue_for_review(self.predictions(300, "7"))
        assert not ReviewItem.objects.exists()


@override_settings(REVIEW_SECOND_OPINION_RATE=0.0, AUTO_ACCEPT_PRECISION=0.99)
class QualityTests(TestCase):
    def setUp(self):
        reviewer = make_user("rita", "reviewers", staff=True)
        # Three audited automatic decisions on tops: two right, one wrong; one unusable photo (tells nothing).
        for name, answer in (("a", "tops"), ("b", "tops"), ("c", "shirts"), ("d", "unusable")):
            item = review_item(name=f"{name}.jpg", reason="", confidence=0.5)
            services.record_decision(item.pk, reviewer, answer, source="desk", seconds=4.0)
        shoes = review_item(name="e.jpg", reason="", predicted="tshirts", confidence=0.5)
        services.record_decision(shoes.pk, reviewer, "tshirts", source="desk")

    def test_the_estimate_counts_settled_audits_per_class(self):
        report = audit_precision()
        tops = report["per_class"]["tops"]
        assert (tops["audited"], tops["agreed"], round(tops["precision"], 4)) == (3, 2, 0.6667)
        assert (round(tops["low"], 4), round(tops["high"], 4)) == (0.2077, 0.9385)
        assert tops["failing"]  # the whole interval lies below 99%
        assert not report["per_class"]["tshirts"]["failing"]  # one right answer: too few to tell
        assert (report["overall"]["audited"], report["overall"]["agreed"]) == (4, 3)

    def test_api_quality_answers_reviewers_and_operators_only(self):
        expected = {"anonymous": 401, "no group": 403, "reviewer": 200, "operator": 200}
        users = {
            "no group": make_user("nobody"),
            "reviewer": make_user("rob", "reviewers"),
            "operator": make_user("olga", "operators"),
        }
        for who, status in expected.items():
            client = Client()
            if who in users:
                client.force_login(users[who])
            response = client.get("/api/quality/")
            assert response.status_code == status, who
        token = Token.objects.create(user=users["operator"])
        body = Client().get("/api/quality/", HTTP_AUTHORIZATION=f"Token {token.key}").json()
        assert set(body) >= {"overall", "per_class", "target"}
        assert set(body["per_class"]["tops"]) >= {"audited", "agreed", "precision", "low", "high"}
        rita = next(row for row in body["reviewers"] if row["reviewer"] == "rita")
        assert (rita["decisions"], rita["median_seconds"], rita["audits"], rita["audit_agreement"]) == (5, 4.0, 4, 0.75)

    def test_the_quality_page_shows_a_class_failing_its_promise(self):
        client = Client()
        client.force_login(make_user("olga", "operators"))
        page = client.get("/quality/").content.decode()
        assert "below its promise" in page
        row = page.split("<td>tops</td>")[1].split("</tr>")[0]
        assert "66.7%" in row and "20.8%–93.9%" in row and "failing" in row
        assert 'id="nav-quality"' in client.get("/upload/").content.decode()

    def test_the_gauges_are_in_metrics(self):
        body = Client().get("/metrics").content.decode()
        assert 'review_audit_precision{predicted_class="tops"} 0.6666' in body
        assert 'review_audit_precision_high{predicted_class="tops"} 0.938' in body
        assert 'review_audit_audited{predicted_class="all"} 4.0' in body
        assert "review_audit_target 0.99" in body
