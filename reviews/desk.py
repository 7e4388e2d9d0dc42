"""The review desk's pages, inside the admin: one photo at a time with a key per decision, and
the grid of one predicted class (the JSON endpoints they call are in `desk_api`)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.cache import cache_control

from batches import previews
from batches.models import BatchRun

from . import claims
from .desk_api import GRID_SIZE
from .models import ReviewDecision, ReviewItem

GRID_PHOTO_HEIGHT = 240
QUEUE_LABELS = {
    "low_confidence": "low confidence",
    "unknown_item": "unknown item",
    "audit": "spot checks",
    "second_opinion": "second opinions",
    "disputed": "disputes (leads)",
}
KEYS = [
    ("Enter or A", "accept the predicted class"),
    ("1 2 3", "pick one of the top 3"),
    ("letters, or / then letters", "pick any class by name, then Enter"),
    ("N", "none of our categories (then a few words on what it is, and Enter)"),
    ("U", "unusable photo: blurred, empty, several items (retake)"),
    ("S", "skip: leave it for later"),
    ("Z", "undo: back to your last decision, to change it"),
    ("G", "grid: the photos of this class at once"),
    ("F", "the photo at full size"),
]
GRID_KEYS = [
    ("click, or arrows and Space", "mark a photo that is not the class shown"),
    ("Enter", "confirm the unmarked ones; the marked ones open on the desk one by one"),
    ("Esc", "back to the desk without deciding"),
]


def require_reviewer(request) -> None:
    if not request.user.has_perm("reviews.change_reviewitem"):
        raise PermissionDenied("The review desk needs the reviewer role.")


def queue_from(request) -> claims.Queue:
    """The queue chosen by the page's filters (anything unknown is ignored)."""
    reason = request.GET.get("reason", "")
    run = request.GET.get("run", "")
    return claims.Queue(
        predicted_class=request.GET.get("class", "")[:100],
        reason=reason if reason in claims.QUEUE_REASONS else "",
        run=int(run) if run.isdigit() and len(run) < 19 else None,
    )


def desk_page(request):
    require_reviewer(request)
    queue = queue_from(request)
    waiting = ReviewItem.objects.waiting()
    recent = (
        ReviewDecision.objects.filter(reviewer=request.user)
        .select_related("item__prediction")
        .order_by("-decided_at", "-id")[:10]
    )
    data = {
        "queue": {"predicted_class": queue.predicted_class, "reason": queue.reason, "run": queue.run},
        "urls": {
            "next": reverse("reviews:desk-next"),
            "renew": reverse("reviews:desk-renew"),
            "release": reverse("reviews:desk-release"),
            "grid": reverse("reviews:desk-grid"),
            "decide": reverse("reviews:desk-decide", args=[0]),
            "skip": reverse("reviews:desk-skip", args=[0]),
            "open": reverse("reviews:desk-open", args=[0]),
            "thumbnail": reverse("batches:thumbnail", args=[0]),
        },
        "recent": [
            {
                "item": d.item_id,
                "image": d.item.prediction.image_id,
                "outcome": d.outcome,
                "final_class": d.final_class,
            }
            for d in recent
        ],
        "claim_seconds": settings.REVIEW_CLAIM_SECONDS,
        # ?item=<id> (the run page's "Review" link): that photo first.
        "open": int(request.GET["item"])
        if request.GET.get("item", "").isdigit() and len(request.GET["item"]) < 19
        else None,
    }
    context = {
        **admin.site.each_context(request),
        "title": "Review desk",
        "data": data,
        "queue": queue,
        "keys": KEYS,
        "classes": sorted(waiting.values_list("prediction__predicted_class", flat=True).distinct().order_by()),
        "reasons": [(reason, QUEUE_LABELS[reason]) for reason in claims.QUEUE_REASONS],
        "runs": BatchRun.objects.filter(predictions__review__status__in=ReviewItem.WAITING)
        .annotate(waiting=Count("predictions__review"))
        .order_by("-id")[:30],
        "waiting": claims.queue_items(request.user, queue).count(),
    }
    return render(request, "reviews/desk.html", context)


def grid_page(request):
    """Up to GRID_SIZE waiting photos of one predicted class, claimed for the reviewer."""
    require_reviewer(request)
    queue = queue_from(request)
    if not queue.predicted_class:
        busiest = (
            claims.queue_items(request.user, queue)
            .values_list("prediction__predicted_class")
            .annotate(n=Count("id"))
            .order_by("-n")
            .first()
        )
        queue = claims.Queue(busiest[0] if busiest else "", queue.reason, queue.run)
    items = claims.claim_items(request.user, queue, GRID_SIZE, resume=True) if queue.predicted_class else []
    desk_url = reverse("reviews:desk") + (f"?class={queue.predicted_class}" if queue.predicted_class else "")
    context = {
        **admin.site.each_context(request),
        "title": f"Grid: {queue.predicted_class or 'nothing waiting'}",
        "queue": queue,
        "items": items,
        "keys": GRID_KEYS,
        "photo_height": GRID_PHOTO_HEIGHT,
        "data": {
            "confirm": reverse("reviews:desk-grid-confirm"),
            "release": reverse("reviews:desk-release"),
            "desk": desk_url,
        },
    }
    return render(request, "reviews/grid.html", context)


@cache_control(private=True, max_age=3600)
def photo(request, pk: int):
    """An item's photo re-encoded: at full size, or at the grid's height (`?size=grid`)."""
    if not request.user.has_perm("reviews.view_reviewitem"):
        raise PermissionDenied("Photos of the review queue need the reviewer role.")
    item = get_object_or_404(ReviewItem.objects.select_related("prediction__image"), pk=pk)
    image = item.prediction.image
    try:
        if request.GET.get("size") == "grid":
            body = previews.photo_jpeg(image, GRID_PHOTO_HEIGHT, max_width=GRID_PHOTO_HEIGHT)
        else:
            body = previews.full_jpeg(image)
    except previews.NoPreview:
        raise Http404("no preview") from None
    return HttpResponse(body, content_type="image/jpeg")
