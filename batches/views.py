"""Web pages: upload and classify, run progress and results, history, CSV export, thumbnails."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST

from classifier import registry
from classifier.models import Retrain

from . import exports, ingest, previews, services
from .forms import UploadForm
from .models import BatchRun, Image
from .uploads import megabytes

RESULTS_PER_PAGE = 100


@login_required
@permission_required(["batches.add_image", "batches.add_batchrun"], raise_exception=True)
def upload(request):
    if request.method != "POST":
        return upload_page(request)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return upload_page(request, form, status=400)
    registration = ingest.register_uploads(form.cleaned_data["photos"], Image.Source.UPLOAD)
    if registration.images:
        return _start_and_show(request, registration.images, BatchRun.Trigger.BUTTON, registration.rejected)
    refused = [f"{name}: refused ({rejection.reason}): {rejection.detail}" for name, rejection in registration.rejected]
    return upload_page(request, form, errors=["None of the photos could be stored.", *refused], status=400)


def upload_page(request, form=None, errors=(), status=200):
    """The upload form; `errors` are shown above it (also for a request Django refused unread)."""
    context = {
        "form": form or UploadForm(),
        "errors": errors,
        "max_files": settings.MAX_UPLOAD_FILES,
        "max_bytes": settings.MAX_UPLOAD_BYTES,
        "max_mb": megabytes(settings.MAX_UPLOAD_BYTES),
    }
    return render(request, "batches/upload.html", context, status=status)


def _start_and_show(request, images, trigger, refused=()):
    try:
        run = services.start_and_enqueue_run(trigger, images=images, user=request.user, refused=refused)
    except services.NoModel as exc:
        messages.error(request, f"The photos are stored, but no model is available to classify them: {exc}")
        return redirect("batches:run_list")
    return redirect("batches:run_detail", run.pk)


@login_required
@permission_required("batches.add_batchrun", raise_exception=True)
@require_POST
def run_start(request):
    """Classify every stored photo that has no result for the production model yet."""
    try:
        run = services.start_and_enqueue_run(BatchRun.Trigger.BUTTON, user=request.user, skip_empty=True)
    except services.NoModel as exc:
        messages.error(request, f"No model is available: {exc}")
        return redirect("batches:run_list")
    if run is None:
        messages.info(request, "Nothing to classify: every stored photo already has a result; no run was started.")
        return redirect("batches:run_list")
    return redirect("batches:run_detail", run.pk)


@login_required
@permission_required("batches.view_batchrun", raise_exception=True)
def run_list(request):
    page = Paginator(BatchRun.objects.all(), 50).get_page(request.GET.get("page"))
    version = registry.remembered_alias(settings.MODEL_ALIAS)
    unclassified = Image.objects.unresolved_for(version).count() if version else Image.objects.count()
    retrains = Retrain.objects.all()[:5]
    context = {"page": page, "unclassified": unclassified, "version": version, "retrains": retrains}
    return render(request, "batches/run_list.html", context)


TRIAGE = [
    ("", "All"),
    ("review", "Needs review"),
    ("accepted", "Auto-accepted"),
    ("failed", "Failed"),
    ("pending", "Waiting"),
]


@login_required
@permission_required("batches.view_batchrun", raise_exception=True)
def run_detail(request, pk: int):
    run = get_object_or_404(BatchRun, pk=pk)
    show = request.GET.get("show", "")
    if show not in dict(TRIAGE):
        show = ""
    page = Paginator(run.result_images(show), RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    counts = run.counts()
    distribution = run.class_distribution()
    review = sum(row["review"] for row in distribution)
    triage = {
        "": run.total,
        "review": review,
        "accepted": counts["predicted"] - review,
        "failed": counts["failed"],
        "pending": counts["pending"],
    }
    largest = max((row["total"] for row in distribution), default=1)
    for row in distribution:  # bar lengths in percent of the largest class
        row["accepted_pct"] = round(100 * row["accepted"] / largest, 2)
        row["review_pct"] = round(100 * row["review"] / largest, 2)
    context = {
        "run": run,
        "page": page,
        "counts": counts,
        "failures": run.failure_counts(),
        "show": show,
        "tabs": [(key, label, triage[key]) for key, label in TRIAGE],
        "distribution": distribution,
        "workers": run.worker_counts(),
        "can_review": request.user.is_staff and request.user.has_perm("reviews.change_reviewitem"),
    }
    return render(request, "batches/run_detail.html", context)


@login_required
@permission_required("batches.view_batchrun", raise_exception=True)
def run_export(request, pk: int, fmt: str):
    run = get_object_or_404(BatchRun, pk=pk)
    lines, content_type = {
        "csv": (exports.csv_lines, "text/csv"),
        "jsonl": (exports.jsonl_lines, "application/x-ndjson"),
    }[fmt]
    response = StreamingHttpResponse(lines(exports.result_rows(run)), content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-results.{fmt}"'
    return response


@login_required
@permission_required("batches.view_image", raise_exception=True)
@cache_control(private=True, max_age=3600)
def thumbnail(request, pk: int):
    """A small JPEG re-encoded from the stored photo: stored bytes are never sent as they are."""
    image = get_object_or_404(Image, pk=pk)
    try:
        return HttpResponse(previews.thumbnail_jpeg(image), content_type="image/jpeg")
    except previews.NoPreview:
        raise Http404("no preview") from None
