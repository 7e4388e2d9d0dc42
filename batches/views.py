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

from . import exports, ingest, previews, services
from .forms import UploadForm
from .models import BatchRun, Image

RESULTS_PER_PAGE = 100


@login_required
@permission_required(["batches.add_image", "batches.add_batchrun"], raise_exception=True)
def upload(request):
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        registration = ingest.register_uploads(form.cleaned_data["photos"], Image.Source.UPLOAD)
        for name, rejection in registration.rejected:
            messages.error(request, f"{name}: refused ({rejection.reason}): {rejection.detail}")
        if registration.images:
            return _start_and_show(request, registration.images, BatchRun.Trigger.BUTTON)
    return render(
        request,
        "batches/upload.html",
        {"form": form, "max_files": settings.MAX_UPLOAD_FILES, "max_mb": settings.MAX_UPLOAD_BYTES // (1024 * 1024)},
    )


def _start_and_show(request, images, trigger):
    try:
        run = services.start_and_enqueue_run(trigger, images=images, user=request.user)
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
    return render(request, "batches/run_list.html", {"page": page, "unclassified": unclassified, "version": version})


@login_required
@permission_required("batches.view_batchrun", raise_exception=True)
def run_detail(request, pk: int):
    run = get_object_or_404(BatchRun, pk=pk)
    page = Paginator(run.result_images(), RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "run": run,
        "page": page,
        "counts": run.counts(),
        "failures": run.failure_counts(),
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
