"""Schema fuzz: schemathesis generates requests from the app's own /openapi.json and sends them to a
real uvicorn server with the token; every response must be a non-5xx that matches the spec.

Both schema-valid (positive) and schema-violating (negative) requests are sent: valid ones must be
accepted, invalid ones rejected with a documented 4xx. Under CI (CI=true) the examples are
derandomised so a run is reproducible; locally each run explores new inputs.
The live stream (/api/events/stream) never ends by design, so it is left out here and tested
in test_api.py.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from gateway.api.throttle import AuthThrottle
from web_support import TOKEN, serve

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    # The fuzz sends wrong credentials on purpose; the throttle that would soon hold its address
    # back (429, documented) is tested on its own in test_api_auth.py.
    with serve(tmp_path_factory.mktemp("fuzz"), throttle=AuthThrottle(per_client=10**6, overall=10**6)) as served:
        live, _ = served.alerts.start("gate", "gathering", 120, ago_s=120)
        served.alerts.end(live)
        served.alerts.start("market", "crowd", 72)
        yield served


OPERATIONS = [
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/api/info"),
    ("GET", "/api/cameras"), ("GET", "/api/cameras/{camera_id}"), ("GET", "/api/cameras/{camera_id}/snapshot.jpg"),
    ("GET", "/api/events"), ("GET", "/api/events/{event_id}"), ("GET", "/api/events/{event_id}/snapshot.jpg"),
    ("GET", "/api/events/{event_id}/clip"), ("POST", "/api/events/{event_id}/ack"),
    ("GET", "/api/cameras/{camera_id}/counting"), ("POST", "/api/cameras/{camera_id}/counting/start"),
    ("POST", "/api/cameras/{camera_id}/counting/snapshots"),
    ("GET", "/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}"),
    ("GET", "/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}/image.jpg"),
    ("PUT", "/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}/points"),
    ("DELETE", "/api/cameras/{camera_id}/counting/snapshots/{snapshot_id}"),
    ("POST", "/api/cameras/{camera_id}/counting/fit"),
]
"""Every operation but the never-ending stream (a test below checks this list against the spec)."""


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", headers=AUTH)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_errors_and_responses_match_the_spec(api_schema, fuzz_server, method, path, mode):
    # schemathesis' own pytest plugin (schema.parametrize) does not run under pytest 9 yet, so the
    # cases come from its Hypothesis strategy and are checked with the same call_and_validate.
    if mode is GenerationMode.NEGATIVE and "{" not in path and path != "/api/events":
        pytest.skip("no parameters or body: nothing to make invalid")
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate], derandomize=bool(os.environ.get("CI")))
    def run(case) -> None:
        case.call_and_validate(base_url=fuzz_server.url, headers=AUTH, excluded_checks=excluded)

    # Query strings cannot carry types: schemathesis' "schema-violating" query values (camera=0 as an
    # integer, an empty array for acked) reach the server as valid strings. Query-only operations
    # therefore skip that one check here; test_api.py pins the strict query handling instead.
    excluded = [negative_data_rejection] if mode is GenerationMode.NEGATIVE and path == "/api/events" else []

    run()


def test_the_fuzz_saw_the_whole_api(fuzz_server):
    import httpx

    spec = httpx.get(f"{fuzz_server.url}/openapi.json", headers=AUTH).json()
    paths = set(spec["paths"])
    listed = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert listed - set(OPERATIONS) == {("GET", "/api/events/stream")}
    assert set(OPERATIONS) <= listed
    assert {"/healthz", "/readyz", "/metrics", "/api/cameras", "/api/cameras/{camera_id}/snapshot.jpg",
            "/api/events", "/api/events/{event_id}", "/api/events/{event_id}/snapshot.jpg",
            "/api/events/{event_id}/ack"} <= paths
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
    assert not any(p.startswith("/static") or p in ("/", "/login") for p in paths)
