"""Fuzz the HTTP API from its own OpenAPI document (schemathesis): no 5xx, no hang, every answer documented.

A real daemon (fake sampler, real store, real server) listens on 127.0.0.1 in its own thread;
schemathesis generates valid and invalid requests for every operation of ``/api/openapi.json``
and checks each response: not a server error, a status code, content type and body the document
declares. Path ids are real ones half the time, so the handlers behind the 404s are reached too.
``AMBIENT_FUZZ_EXAMPLES`` sets the examples per operation (default 6).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from ambient import places
from ambient.openapi import build_openapi
from ambient.server import routes
from ambient.sources import SourceEvent
from tests.fakes import FakeSampler
from tests.reliability.helpers import ThreadedDaemon, make_config
from tests.test_server import FakeMemory

EXAMPLES = int(os.environ.get("AMBIENT_FUZZ_EXAMPLES", "6"))
# Bad input may also be refused for its size (413, server.max_body_bytes) before it is read.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "409", "413", "415"]
            }
        }
    }
)
WEBSOCKET_AND_PAGES = ("/api/events", "/", "/static/{name}")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedDaemon]:
    home = tmp_path_factory.mktemp("fuzz")
    config = make_config(home, sampling__max_tokens=2, server__max_body_bytes=65536)
    with ThreadedDaemon(config, FakeSampler(), memory=FakeMemory()) as rig:
        app = rig.app
        _, root = rig.blocking(app.store.create_tree, "A seed tree for the fuzzer")
        rig.call(lambda: rig.daemon.offer_now(SourceEvent("manual", "seed", root.id)))
        yield rig


@pytest.fixture(scope="module")
def api_schema(rig: ThreadedDaemon) -> Any:
    schema = schemathesis.openapi.from_dict(build_openapi(routes(places.installed())), config=CONFIG)
    ids = _real_ids(rig)
    rng = random.Random(9)

    @schema.hook  # type: ignore[untyped-decorator]
    def map_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
        if not path_parameters or context.operation.path == "/static/{name}":
            return path_parameters
        for name in ("tree_id", "node_id", "offer_id"):
            if name in path_parameters and rng.random() < 0.5:
                path_parameters[name] = rng.choice(ids[name])
        return path_parameters

    return schema.exclude(path=list(WEBSOCKET_AND_PAGES))


def _real_ids(rig: ThreadedDaemon) -> dict[str, list[str]]:
    store = rig.app.store
    trees = rig.blocking(store.list_trees)
    nodes = [n for t in trees for n in rig.blocking(store.tree_nodes, t.id)]
    offers = [o for t in trees for o in rig.blocking(store.tree_offers, t.id)]
    return {
        "tree_id": [t.id for t in trees],
        "node_id": [n.id for n in nodes],
        "offer_id": [o.id for o in offers],
    }


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


# schemathesis.pytest.from_fixture does not work with pytest 9 (it reads Function._nodeid), so each
# operation's strategy is driven by hypothesis directly; the checks are the same.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_the_api_keeps_to_its_document(api_schema: Any, rig: ThreadedDaemon, mode: GenerationMode) -> None:
    session = requests.Session()
    calls = 0
    for operation in _operations(api_schema):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
        )
        def call(case: Any) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(base_url=rig.base, session=session, headers=rig.auth, timeout=15)

        call()
    print(f"fuzz ({mode.value}): {calls} requests over {len(_operations(api_schema))} operations")
    assert calls >= EXAMPLES


def test_the_daemon_is_healthy_after_fuzzing(rig: ThreadedDaemon) -> None:
    status = requests.get(f"{rig.base}/api/status", headers=rig.auth, timeout=10)
    assert status.status_code == 200
    assert rig.blocking(rig.app.store.integrity_check) == "ok"
