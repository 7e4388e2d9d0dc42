"""Every API endpoint fuzzed from its own OpenAPI schema (schemathesis, property-based) over HTTP
against a live server: no request answers 5xx, and every 4xx says why in JSON.

The suite runs FUZZ_EXAMPLES (default 8) valid and 8 invalid cases per operation; `make fuzz`
runs more.
"""

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.helpers import BAD_INPUTS, make_user, register_file

pytestmark = [pytest.mark.fuzz, pytest.mark.django_db(transaction=True)]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))


@schemathesis.check
def client_errors_say_why(ctx, response, case):
    """A 4xx carries a JSON body with a reason: an error code, a detail, or the fields at fault."""
    if 400 <= response.status_code < 500:
        try:
            body = json.loads(response.content or b"")
        except ValueError:
            raise AssertionError(f"{response.status_code} without a JSON body: {response.content[:200]!r}") from None
        assert body, f"{response.status_code} with an empty JSON body"


def fuzz(operation, mode, server: dict) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def run(case):
        response = case.call(**server)
        case.validate_response(response, checks=[not_a_server_error, client_errors_say_why])

    run()


def test_no_endpoint_answers_5xx_and_every_4xx_says_why(live_server, trained_model, settings):
    settings.API_THROTTLE_PREDICT = settings.API_THROTTLE_WRITES = ""  # the fuzzer is not rate limited
    admin = make_user("fuzzer", staff=True)
    admin.is_superuser = True  # every permission: the requests get past the checks, into the code
    admin.save()
    register_file(BAD_INPUTS / "valid_control.jpg")  # a stored photo for image ids to find
    server = {
        "base_url": live_server.url,
        "headers": {"Authorization": f"Token {Token.objects.create(user=admin).key}"},
    }
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/", headers=server["headers"])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # /health, /predict, runs, images, quality, the desk's seven
    failures = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, server)
            except Unsatisfiable:  # no input of the operation can be made invalid (GET /health)
                continue
            except Exception as exc:  # every operation is tried; all failures are reported together
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
