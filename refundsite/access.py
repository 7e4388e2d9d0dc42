"""Who may open what: the expected answer of every route to each role, kept beside the URL
configuration. tests/site/test_access.py requests each route as each role and compares; a route
added to refundsite/urls.py without a row here fails that test. (The admin's own model pages are
Django's: staff only, then each model's permissions; `admin:index` stands for them.)

Requests are made without a body, in this order; `<pk>` is an existing object of the route's kind.
"""

ROLES = ("anonymous", "no_group", "operator", "reviewer", "staff", "superuser")

# A reviewer is in the `reviewers` group with staff status (the review desk is in the admin);
# staff has staff status and no group; no_group is a plain user.
# URL name: (method, expected status per role, in ROLES order)
ROUTES = {
    "home": ("GET", (302, 200, 302, 302, 200, 302)),
    "login": ("GET", (200, 200, 200, 200, 200, 200)),
    "health": ("GET", (200, 200, 200, 200, 200, 200)),
    "metrics": ("GET", (200, 200, 200, 200, 200, 200)),
    "api-schema": ("GET", (401, 200, 200, 200, 200, 200)),
    "predict": ("POST", (401, 403, 400, 403, 403, 400)),
    "run-list": ("GET", (401, 403, 200, 200, 403, 200)),
    "run-detail": ("GET", (401, 403, 200, 200, 403, 200)),
    "run-results": ("GET", (401, 403, 200, 200, 403, 200)),
    "api-images": ("POST", (401, 403, 415, 403, 403, 415)),  # 415: photos come as multipart
    "reviews:api-quality": ("GET", (401, 403, 200, 200, 403, 200)),
    "batches:upload": ("GET", (302, 403, 200, 403, 403, 200)),
    "batches:run_list": ("GET", (302, 403, 200, 200, 403, 200)),
    "batches:run_start": ("POST", (302, 403, 302, 403, 403, 302)),
    "batches:run_detail": ("GET", (302, 403, 200, 200, 403, 200)),
    "batches:run_export": ("GET", (302, 403, 200, 200, 403, 200)),
    "batches:thumbnail": ("GET", (302, 403, 200, 200, 403, 200)),
    "reviews:quality": ("GET", (302, 403, 200, 200, 403, 200)),
    "reviews:desk": ("GET", (302, 302, 302, 200, 403, 200)),
    "reviews:desk-grid": ("GET", (302, 302, 302, 200, 403, 200)),
    "reviews:desk-photo": ("GET", (302, 302, 302, 200, 403, 200)),
    "reviews:desk-next": ("POST", (403, 403, 403, 200, 403, 200)),
    "reviews:desk-decide": ("POST", (403, 403, 403, 400, 403, 400)),
    "reviews:desk-skip": ("POST", (403, 403, 403, 200, 403, 200)),
    "reviews:desk-open": ("POST", (403, 403, 403, 200, 403, 200)),
    "reviews:desk-renew": ("POST", (403, 403, 403, 400, 403, 400)),
    "reviews:desk-release": ("POST", (403, 403, 403, 400, 403, 400)),
    "reviews:desk-grid-confirm": ("POST", (403, 403, 403, 200, 403, 200)),
    "admin:index": ("GET", (302, 302, 302, 200, 200, 200)),
    "logout": ("POST", (302, 302, 302, 302, 302, 302)),  # last: it ends the session
}
