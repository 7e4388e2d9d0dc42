"""The review desk's JSON endpoints (under /admin/reviews/desk/api/): claim the next items, record
a decision (and claim the next item in the same request), skip, look at a decision again, keep
claims alive, confirm a grid.

Session authentication with its CSRF check, the reviewer's permission on every request; a
decision on an item someone else holds is refused with 409 and the reason.
"""

from __future__ import annotations

import base64

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from batches import previews
from batches.serializers import MAX_ID

from . import claims, services
from .models import ReviewDecision, ReviewItem

# Height of the photo on the desk: a 60x80 catalogue photo is scaled up 8 times.
DESK_PHOTO_HEIGHT = 640
GRID_SIZE = claims.MAX_HELD
REASON_LABELS = {
    "low_confidence": "Low confidence",
    "unknown_item": "Unknown item: maybe none of our categories",
    "audit": "Spot check",
    "second_opinion": "Second opinion: another reviewer decided it",
    "disputed": "Disputed: two reviewers disagree",
}
ERROR_STATUS = {
    services.InvalidAnswer: status.HTTP_400_BAD_REQUEST,
    services.ClaimedByOther: status.HTTP_409_CONFLICT,
    services.NeedsLead: status.HTTP_403_FORBIDDEN,
}


def item_payload(item: ReviewItem, reviewer) -> dict:
    """What the desk shows of an item; the photo comes along, ready to show."""
    prediction = item.prediction
    image = prediction.image
    try:
        photo = "data:image/jpeg;base64," + base64.b64encode(previews.photo_jpeg(image, DESK_PHOTO_HEIGHT)).decode()
    except previews.NoPreview:
        photo = None
    yours = item.reviewer_id == reviewer.pk and bool(item.outcome)
    return {
        "id": item.pk,
        "image": image.pk,
        "name": image.original_name,
        "run": prediction.batch_run_id,
        "predicted_class": prediction.predicted_class,
        "confidence": prediction.confidence,
        "threshold": prediction.threshold,
        "top": prediction.top(3),
        "classes": sorted(prediction.probabilities),
        "reason": item.queue_reason,
        "reason_label": REASON_LABELS.get(item.queue_reason, item.queue_reason),
        "yours": {"outcome": item.outcome, "final_class": item.final_class} if yours else None,
        "photo": photo,
        "full_size": reverse("reviews:desk-photo", args=[item.pk]),
    }


def decision_payload(decision: ReviewDecision) -> dict:
    item = decision.item
    return {
        "id": decision.pk,
        "item": item.pk,
        "image": item.prediction.image_id,
        "outcome": decision.outcome,
        "final_class": decision.final_class,
        "predicted_class": item.prediction.predicted_class,
        "stage": decision.stage,
        "status": item.status,
        "decided_at": decision.decided_at.isoformat(),
    }


class IsDeskReviewer(BasePermission):
    message = "The review desk needs the reviewer role and staff status."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff and user.has_perm("reviews.change_reviewitem"))


class QueueSerializer(serializers.Serializer):
    predicted_class = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    reason = serializers.ChoiceField(choices=claims.QUEUE_REASONS, required=False, allow_blank=True, default="")
    run = serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, allow_null=True, default=None)


class NextSerializer(serializers.Serializer):
    queue = QueueSerializer(required=False)
    count = serializers.IntegerField(min_value=0, max_value=GRID_SIZE, default=1)
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=1000, default=list
    )
    resume = serializers.BooleanField(default=False, help_text="every item you still hold first (opening the desk)")


class DecideSerializer(serializers.Serializer):
    answer = serializers.CharField(max_length=100, help_text="a class, none_of_our_categories or unusable")
    note = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    seconds = serializers.FloatField(min_value=0, max_value=86400, required=False, allow_null=True, default=None)
    next = NextSerializer(required=False)


class IdsSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=1000)


class GridSerializer(serializers.Serializer):
    confirm = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=GRID_SIZE, default=list
    )
    wrong = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID), max_length=GRID_SIZE, default=list
    )


class ItemSerializer(serializers.Serializer):
    """An item as item_payload sends it (the schema's description of it)."""

    id = serializers.IntegerField()
    image = serializers.IntegerField()
    name = serializers.CharField()
    run = serializers.IntegerField(allow_null=True)
    predicted_class = serializers.CharField()
    confidence = serializers.FloatField()
    threshold = serializers.FloatField(allow_null=True)
    top = serializers.ListField(child=serializers.ListField(), help_text="[class, probability] x 3")
    classes = serializers.ListField(child=serializers.CharField())
    reason = serializers.CharField()
    reason_label = serializers.CharField()
    yours = serializers.DictField(allow_null=True, help_text="your earlier decision on it, if any")
    photo = serializers.CharField(allow_null=True, help_text="data: URL of the photo, 640 px tall")
    full_size = serializers.CharField(help_text="URL of the photo at its own size")


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item = serializers.IntegerField()
    image = serializers.IntegerField()
    outcome = serializers.CharField()
    final_class = serializers.CharField(allow_blank=True)
    predicted_class = serializers.CharField()
    stage = serializers.CharField()
    status = serializers.CharField()
    decided_at = serializers.DateTimeField()


class DeskErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.JSONField()


ITEMS = inline_serializer("DeskItems", {"items": ItemSerializer(many=True)})
ERRORS = {code: DeskErrorSerializer for code in (400, 403, 404, 409)}


def desk_schema(request, response):
    return extend_schema(request=request, responses={200: response, **ERRORS}, tags=["review desk"])


class DeskView(APIView):
    authentication_classes = [SessionAuthentication]  # with its CSRF check
    permission_classes = [IsDeskReviewer]

    def valid(self, serializer_class, data=None) -> dict:
        serializer = serializer_class(data=self.request.data if data is None else data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def handle_exception(self, exc):
        if isinstance(exc, serializers.ValidationError):
            return Response({"error": "invalid_request", "detail": exc.detail}, status=status.HTTP_400_BAD_REQUEST)
        if isinstance(exc, services.ReviewError):
            return Response({"error": exc.code, "detail": str(exc)}, status=ERROR_STATUS.get(type(exc), 400))
        if isinstance(exc, ReviewItem.DoesNotExist):
            return Response({"error": "not_found", "detail": "no such review item"}, status=status.HTTP_404_NOT_FOUND)
        response = super().handle_exception(exc)
        if isinstance(response.data, dict) and "detail" in response.data and "error" not in response.data:
            response.data = {"error": getattr(exc, "default_code", "error"), "detail": response.data["detail"]}
        return response

    def next_items(self, wanted: dict | None) -> list[dict]:
        if not wanted or not wanted["count"]:
            return []
        queue = claims.Queue(**wanted.get("queue", {}))
        items = claims.claim_items(self.request.user, queue, wanted["count"], wanted["exclude"], wanted["resume"])
        return [item_payload(item, self.request.user) for item in items]


class NextItemsView(DeskView):
    """Claim the next items of a queue for you (oldest first) and send them with their photos."""

    @desk_schema(NextSerializer, ITEMS)
    def post(self, request):
        return Response({"items": self.next_items(self.valid(NextSerializer))})


class DecideView(DeskView):
    """Record your decision on an item, and claim the next item of your queue in the same request."""

    @desk_schema(
        DecideSerializer,
        inline_serializer("DeskDecided", {"decision": DecisionSerializer(), "items": ItemSerializer(many=True)}),
    )
    def post(self, request, pk: int):
        data = self.valid(DecideSerializer)
        decision = services.record_decision(
            pk,
            request.user,
            data["answer"],
            source=ReviewDecision.Source.DESK,
            seconds=data["seconds"],
            note=data["note"],
        )
        return Response({"decision": decision_payload(decision), "items": self.next_items(data.get("next"))})


class SkipView(DeskView):
    """Give an item back to the pool undecided (and claim the next one)."""

    @desk_schema(NextSerializer, ITEMS)
    def post(self, request, pk: int):
        data = self.valid(NextSerializer)
        if not claims.release_items([pk], request.user):  # it was not yours: free, or someone else's
            item = ReviewItem.objects.filter(pk=pk)
            if not item.exists():
                raise ReviewItem.DoesNotExist
            if not item.unclaimed().exists():
                raise services.ClaimedByOther("someone else is reviewing this photo now")
        return Response({"items": self.next_items(data)})


class OpenView(DeskView):
    """Claim one given item again (to change a decision), unless someone else holds it."""

    @desk_schema(None, ITEMS)
    def post(self, request, pk: int):
        item = claims.claim_item(pk, request.user)
        if item is None:
            if not ReviewItem.objects.filter(pk=pk).exists():
                raise ReviewItem.DoesNotExist
            if claims.queue_items(request.user, claims.Queue()).filter(pk=pk).exists() or (
                ReviewDecision.objects.filter(item_id=pk, reviewer=request.user).exists()
            ):
                raise services.ClaimedByOther("someone else is reviewing this photo now")
            raise services.NeedsLead("this photo is not yours to decide: it waits for another reviewer or a lead")
        return Response({"items": [item_payload(item, request.user)]})


class ReleaseView(DeskView):
    """Give your claims on these items back to the pool (leaving the grid undecided)."""

    @desk_schema(IdsSerializer, inline_serializer("DeskReleased", {"released": serializers.IntegerField()}))
    def post(self, request):
        return Response({"released": claims.release_items(self.valid(IdsSerializer)["ids"], request.user)})


class RenewView(DeskView):
    """Keep your claims on the items the desk holds alive; says how many wait in your queue."""

    @desk_schema(
        inline_serializer(
            "DeskRenew",
            {"ids": serializers.ListField(child=serializers.IntegerField()), "queue": QueueSerializer(required=False)},
        ),
        inline_serializer(
            "DeskRenewed", {"renewed": serializers.IntegerField(), "waiting": serializers.IntegerField()}
        ),
    )
    def post(self, request):
        data = self.valid(IdsSerializer)
        renewed = claims.renew_claims(data["ids"], request.user)
        queue = claims.Queue(**self.valid(QueueSerializer, request.data.get("queue") or {}))
        return Response({"renewed": renewed, "waiting": claims.queue_items(request.user, queue).count()})


class GridConfirmView(DeskView):
    """Confirm the predicted class of the grid's unmarked photos; the marked ones stay yours, for the desk."""

    @desk_schema(
        GridSerializer,
        inline_serializer(
            "DeskGridConfirmed",
            {
                "confirmed": serializers.IntegerField(),
                "refused": serializers.ListField(child=serializers.DictField()),
                "marked": serializers.ListField(child=serializers.IntegerField()),
            },
        ),
    )
    def post(self, request):
        data = self.valid(GridSerializer)
        items = ReviewItem.objects.filter(pk__in=data["confirm"])
        confirmed, refused = services.confirm_predictions(items, request.user, source=ReviewDecision.Source.GRID)
        refusals = [{"id": item.pk, "error": exc.code, "detail": str(exc)} for item, exc in refused]
        claims.renew_claims(data["wrong"], request.user)
        return Response({"confirmed": confirmed, "refused": refusals, "marked": data["wrong"]})
