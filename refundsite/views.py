"""Site-wide pages: the home page that sends each role to its work, what a user without a role can
do, and the 400/403/404/500 pages (JSON on the API's paths)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import JsonResponse
from django.shortcuts import redirect, render
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView

from batches.uploads import megabytes
from batches.views import upload_page

# Paths answered in JSON, errors included.
API_PREFIXES = ("/api/", "/predict", "/health", "/metrics", "/admin/reviews/desk/api/")

ROLE_PAGES = [
    # (permission(s), URL name): the first the user holds is their home page.
    (("batches.add_image", "batches.add_batchrun"), "batches:upload"),
    (("reviews.change_reviewitem",), "reviews:desk"),
    (("batches.view_batchrun",), "batches:run_list"),
]


@login_required
def home(request):
    """Operators land on the upload page, reviewers on the review desk, anyone else on what they may do."""
    user = request.user
    reviewer_not_staff = user.has_perm("reviews.change_reviewitem") and not user.is_staff
    for permissions, url_name in ROLE_PAGES:
        if reviewer_not_staff and url_name != "batches:upload":
            break  # the desk is in the admin: say what to ask for rather than land elsewhere
        if user.has_perms(permissions):
            return redirect(url_name)
    return render(request, "site/access.html", {"reviewer_not_staff": reviewer_not_staff})


def is_api(request) -> bool:
    return request.path.startswith(API_PREFIXES)


def limit_error(exception) -> dict | None:
    """The JSON body of a request refused by one of Django's size guards, or None."""
    if isinstance(exception, TooManyFilesSent):
        return {
            "error": "too_many_files",
            "detail": f"at most {settings.MAX_UPLOAD_FILES} photos per request",
            "limit": settings.MAX_UPLOAD_FILES,
        }
    if isinstance(exception, RequestDataTooBig):
        return {
            "error": "body_too_large",
            "detail": f"the request's fields or JSON body exceed {megabytes(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)}"
            " (photos go in file fields, up to "
            f"{megabytes(settings.MAX_UPLOAD_BYTES)} each)",
            "limit_mb": settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024),
        }
    return None


def bad_request(request, exception):
    refused = limit_error(exception)
    if is_api(request):
        body = refused or {"error": "bad_request", "detail": "the request could not be read"}
        return JsonResponse(body, status=400)
    if refused and request.resolver_match and request.resolver_match.view_name == "batches:upload":
        # The upload form, with the reason as its error (the photos were not read).
        return upload_page(request, errors=[refused["detail"].capitalize() + "."], status=400)
    detail = refused["detail"].capitalize() + "." if refused else "The request could not be read."
    return _page(request, "site/error.html", 400, "Bad request", detail)


def permission_denied(request, exception):
    if is_api(request):
        return JsonResponse({"error": "forbidden", "detail": str(exception) or "permission denied"}, status=403)
    detail = str(exception) or "Your account does not have access to this page."
    return _page(request, "site/error.html", 403, "No access", detail)


def csrf_failure(request, reason=""):
    """A POST without its CSRF token (a form left open across a log-in, or a script without the token)."""
    detail = "The form was out of date or its security token was missing: reload the page and try again."
    if is_api(request):
        return JsonResponse({"error": "csrf_failed", "detail": f"CSRF check failed: {reason}"}, status=403)
    return _page(request, "site/error.html", 403, "Please reload the page", detail)


def page_not_found(request, exception):
    if is_api(request):
        return JsonResponse({"error": "not_found", "detail": f"nothing at {request.path}"}, status=404)
    return _page(request, "site/error.html", 404, "Page not found", f"There is nothing at {request.path}.")


def server_error(request):
    if is_api(request):
        return JsonResponse({"error": "server_error", "detail": "the server failed; the error is logged"}, status=500)
    # No context processors: whatever failed may be what they need.
    return render(None, "site/500.html", status=500)


def _page(request, template, status, title, detail):
    return render(request, template, {"title": title, "detail": detail, "status": status}, status=status)


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema of every endpoint: JSON, or YAML with ?format=yaml or Accept: application/yaml."""

    renderer_classes = [OpenApiJsonRenderer, OpenApiYamlRenderer]
