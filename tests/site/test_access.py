"""Every route answered as refundsite/access.py says, for each role; no route without a row."""

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from batches import engine, services
from batches.models import BatchRun
from refundsite.access import ROLES, ROUTES
from reviews.models import ReviewItem
from tests.helpers import dev_photos, make_user, register_file

pytestmark = pytest.mark.django_db


def route_names(patterns=None, namespace="") -> set[str]:
    """The name of every route of the URL configuration, but the admin site's own pages."""
    names = set()
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                names.add("admin:index")
                continue
            inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            names |= route_names(pattern.url_patterns, inner)
        elif isinstance(pattern, URLPattern):
            assert pattern.name, f"a route without a name: {pattern.pattern}"
            names.add(namespace + pattern.name)
    return names


def test_every_route_has_a_row():
    missing = route_names() - set(ROUTES)
    assert not missing, f"routes without a row in refundsite/access.py: {sorted(missing)}"
    assert not set(ROUTES) - route_names(), "rows for routes that no longer exist"


@pytest.fixture
def clients():
    def client(user=None):
        c = Client()
        if user:
            c.force_login(user)
        return c

    superuser = make_user("root", staff=True)
    superuser.is_superuser = True
    superuser.save()
    return {
        "anonymous": client(),
        "no_group": client(make_user("nobody")),
        "operator": client(make_user("olga", "operators")),
        "reviewer": client(make_user("rita", "reviewers", staff=True)),
        "staff": client(make_user("stan", staff=True)),
        "superuser": client(superuser),
    }


def test_each_role_gets_what_the_matrix_says(clients, trained_model, settings):
    settings.REVIEW_CONFIDENCE_THRESHOLD = 1.01  # the photo waits for review
    path, _ = dev_photos("val", per_class=1, classes=["tops"])[0]
    image = register_file(path)
    run = services.start_batch_run(BatchRun.Trigger.COMMAND)
    engine.process_run(run.pk)
    item = ReviewItem.objects.get()
    arguments = {
        "run-detail": [run.pk],
        "run-results": [run.pk],
        "batches:run_detail": [run.pk],
        "batches:run_export": [run.pk, "csv"],
        "batches:thumbnail": [image.pk],
        "reviews:desk-photo": [item.pk],
        "reviews:desk-decide": [item.pk],
        "reviews:desk-skip": [item.pk],
        "reviews:desk-open": [item.pk],
    }
    wrong = []
    for name, (method, expected) in ROUTES.items():
        url = reverse(name, args=arguments.get(name, []))
        for role, status in zip(ROLES, expected, strict=True):
            ReviewItem.objects.update(claimed_by=None, claimed_until=None)  # each request finds it free
            client = clients[role]
            response = client.post(url, content_type="application/json") if method == "POST" else client.get(url)
            if response.status_code != status:
                wrong.append(f"{method} {url} as {role}: {response.status_code}, expected {status}")
    assert not wrong, "\n".join(wrong)
