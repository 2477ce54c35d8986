"""Our OpenAPI against the real platform's (contract §0: `reference/dumont-openapi-v1.json`).

For every operation of the reference that the local control plane implements, our app's OpenAPI
must have the same path and method, the same path and query parameter names, and the same
request body field names and required fields. Differences are listed, not hidden: what we add on
purpose is in ADDITIVE, operations of features not built yet are in EXPECTED_MISSING (the test
fails when one of them appears, so it gets checked from then on).

The reference is read from DUMONT_REFERENCE_OPENAPI or ../shared/reference beside the repo. A
fresh clone may not have it: then the facts come from `contract_paths.json` beside this file,
derived from the reference by

    python -m tests.adversarial.test_openapi_contract --write-fixture [REFERENCE]

(operation names, parameter names, body field names and required fields only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from dumont_plan.server.app import create_app
from dumont_plan.server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("contract_paths.json")
HTTP_METHODS = ("get", "post", "put", "patch", "delete")

# Operations of features not built yet (serverless endpoints, spot, hibernation wake).
EXPECTED_MISSING_PREFIXES: tuple[str, ...] = ()
EXPECTED_MISSING: set[str] = set()

# Deliberate additive differences (health CAPABILITIES): "OP": {"query"|"body": {names}}.
ADDITIVE: dict[str, dict[str, set[str]]] = {
    "GET /api/v1/jobs/": {"query": {"offset"}},
    "POST /api/v1/jobs/": {"body": {"num_nodes", "secrets", "workdir_id", "start_at"}},
    "GET /api/v1/jobs/{job_id}/logs": {"query": {"tail", "offset", "rank"}},
    "POST /api/v1/instances": {"body": {"use_spot"}},
    "POST /api/v1/serverless/enable/{instance_id}": {
        "body": {"max_price", "webhook_url", "webhook_secret"}
    },
    "POST /api/v1/instances/{instance_id}/serverless/enable": {
        "body": {"max_price", "webhook_url", "webhook_secret"}
    },
    "POST /api/v1/spot/deploy": {"body": {"sync_interval_seconds"}},
    "GET /api/v1/finetune/jobs": {"query": {"status", "limit", "offset"}},
    "POST /api/v1/finetune/jobs": {"body": {"preset", "use_spot"}},
    "POST /api/v1/finetune/jobs/upload-dataset": {"query": {"format"}, "body": {"format"}},
    # The local executor of an endpoint and how it scales (serverless.endpoints-run).
    "POST /api/v1/serverless/endpoints": {
        "body": {"command", "concurrency", "idle_timeout_seconds"}
    },
    "PUT /api/v1/serverless/endpoints/{endpoint_id}": {
        "body": {"command", "concurrency", "idle_timeout_seconds"}
    },
}
# Operations we serve beyond the reference (additive, in health CAPABILITIES).
ADDITIVE_OPERATIONS = {
    # Cron schedules of jobs (capability `jobs.schedules`).
    "GET /api/v1/jobs/schedules",
    "POST /api/v1/jobs/schedules",
    "GET /api/v1/jobs/schedules/{schedule_id}",
    "DELETE /api/v1/jobs/schedules/{schedule_id}",
    "POST /api/v1/jobs/schedules/{schedule_id}/pause",
    "POST /api/v1/jobs/schedules/{schedule_id}/resume",
    "PATCH /api/v1/jobs/schedules/{schedule_id}",  # cron/timezone in place (dumont apply)
    "PATCH /api/v1/jobs/{job_id}",  # a waiting job's start_at (dumont apply)
    "POST /api/v1/auth/logout-all",
    # In the contract (§2.3), not in the reference OpenAPI (capability `settings.provider-key`).
    "GET /api/v1/settings",
    "PUT /api/v1/settings",
    "GET /api/v1/jobs/{job_id}/outputs",
    "GET /api/v1/jobs/{job_id}/outputs/{path}",
    "POST /api/v1/jobs/workdirs",  # capability jobs.workdir
    "POST /api/v1/instances/{instance_id}/exec",  # what works instead of ssh on loopback
    # Remote state (capability `state.http-backend`); LOCK/UNLOCK are outside the schema.
    "GET /api/v1/state/{project}",
    "POST /api/v1/state/{project}",
    "DELETE /api/v1/state/{project}",
    "GET /api/v1/serverless/webhooks/{instance_id}",
    "POST /api/v1/agent/status",  # in the contract (§7.1), not in the reference OpenAPI
    "POST /api/v1/spot/interrupt/{instance_id}",
    "POST /api/v1/spot/sync/{instance_id}",
    "GET /api/v1/spot/dashboard/events",
    "GET /api/v1/spot/dashboard/spend",
    "GET /api/v1/spot/dashboard/prices",
    "GET /api/v1/finetune/presets",
    "GET /api/v1/finetune/jobs/{job_id}/outputs",
    # Serverless endpoints: one endpoint, and its request path (serverless.endpoints-invoke).
    "GET /api/v1/serverless/endpoints/{endpoint_id}",
    "GET /api/v1/serverless/endpoints/{endpoint_id}/invoke/{path}",
    "POST /api/v1/serverless/endpoints/{endpoint_id}/invoke/{path}",
}


def reference_path() -> Path | None:
    env = os.environ.get("DUMONT_REFERENCE_OPENAPI")
    path = Path(env) if env else REPO.parent / "shared" / "reference" / "dumont-openapi-v1.json"
    return path if path.is_file() else None


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _body_facts(spec: dict[str, Any], operation: dict[str, Any]) -> dict[str, Any] | None:
    body = operation.get("requestBody")
    if body is None:
        return None
    content = _resolve(spec, body).get("content", {})
    media = "application/json" if "application/json" in content else next(iter(content), "")
    schema = _resolve(spec, content.get(media, {}).get("schema", {}))
    return {
        "media": media,
        "fields": sorted(schema.get("properties", {})),
        "required": sorted(schema.get("required", [])),
    }


def operation_facts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`"METHOD path"` -> parameter names by location and request body fields, for /api/v1."""
    facts: dict[str, dict[str, Any]] = {}
    for path, item in spec.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method in HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            params = [
                _resolve(spec, p)
                for p in [*item.get("parameters", []), *operation.get("parameters", [])]
            ]
            facts[f"{method.upper()} {path}"] = {
                "path": sorted(p["name"] for p in params if p.get("in") == "path"),
                "query": sorted(p["name"] for p in params if p.get("in") == "query"),
                "body": _body_facts(spec, operation),
            }
    return dict(sorted(facts.items()))


def reference_facts() -> tuple[dict[str, dict[str, Any]], str]:
    path = reference_path()
    if path is not None:
        return operation_facts(json.loads(path.read_text(encoding="utf-8"))), str(path)
    return json.loads(FIXTURE.read_text(encoding="utf-8"))["operations"], FIXTURE.name


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    app = create_app(ServerSettings(data_dir=tmp_path_factory.mktemp("contract")), background=False)
    return operation_facts(app.openapi())


def expected_missing(op: str) -> bool:
    path = op.split(" ", 1)[1]
    return op in EXPECTED_MISSING or path.startswith(EXPECTED_MISSING_PREFIXES)


def test_fixture_matches_the_reference() -> None:
    path = reference_path()
    if path is None:
        pytest.skip(
            "reference OpenAPI not found (set DUMONT_REFERENCE_OPENAPI or put shared/ beside "
            "the repo); the contract test uses contract_paths.json instead"
        )
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))["operations"]
    assert fixture == operation_facts(json.loads(path.read_text(encoding="utf-8"))), (
        "contract_paths.json is stale: python -m tests.adversarial.test_openapi_contract "
        "--write-fixture"
    )


def test_every_implemented_reference_operation_exists(ours: dict[str, Any]) -> None:
    reference, source = reference_facts()
    missing = [op for op in reference if op not in ours and not expected_missing(op)]
    assert not missing, f"operations of {source} that our app lacks: {missing}"
    arrived = [op for op in reference if op in ours and expected_missing(op)]
    assert not arrived, (
        f"now implemented, remove from EXPECTED_MISSING(_PREFIXES) so they are checked: {arrived}"
    )


def _differences(op: str, theirs: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    additive = ADDITIVE.get(op, {})
    problems = []
    if theirs["path"] != mine["path"]:
        problems.append(f"path parameters {mine['path']} != reference {theirs['path']}")
    extra_query = set(mine["query"]) - set(theirs["query"]) - additive.get("query", set())
    lacking_query = set(theirs["query"]) - set(mine["query"])
    if extra_query or lacking_query:
        problems.append(f"query: lacks {sorted(lacking_query)}, adds {sorted(extra_query)}")
    their_body, my_body = theirs["body"], mine["body"]
    if (their_body is None) != (my_body is None):
        problems.append(f"request body: ours {my_body}, reference {their_body}")
    elif their_body is not None and my_body is not None:
        extra = set(my_body["fields"]) - set(their_body["fields"]) - additive.get("body", set())
        lacking = set(their_body["fields"]) - set(my_body["fields"])
        if extra or lacking:
            problems.append(f"body fields: lacks {sorted(lacking)}, adds {sorted(extra)}")
        if my_body["required"] != their_body["required"]:
            problems.append(
                f"body required {my_body['required']} != reference {their_body['required']}"
            )
        if my_body["media"] != their_body["media"]:
            problems.append(f"body media {my_body['media']} != reference {their_body['media']}")
    return problems


def test_parameters_and_body_fields_match(ours: dict[str, Any]) -> None:
    reference, source = reference_facts()
    problems = []
    for op, theirs in reference.items():
        if op in ours and not expected_missing(op):
            problems += [f"{op}: {p}" for p in _differences(op, theirs, ours[op])]
    assert not problems, f"differences from {source}:\n" + "\n".join(problems)


def test_operations_beyond_the_reference_are_declared(ours: dict[str, Any]) -> None:
    reference, source = reference_facts()
    undeclared = sorted(set(ours) - set(reference) - ADDITIVE_OPERATIONS)
    assert not undeclared, (
        f"operations not in {source}: add them to ADDITIVE_OPERATIONS in "
        f"tests/adversarial/test_openapi_contract.py (and CAPABILITIES): {undeclared}"
    )
    stale = sorted(ADDITIVE_OPERATIONS - set(ours)) + [
        f"{op} {where} {name}"
        for op, extras in ADDITIVE.items()
        for where, names in extras.items()
        for name in names
        if op not in ours
        or name not in (ours[op][where] if where == "query" else ours[op]["body"]["fields"])
    ]
    assert not stale, f"ADDITIVE entries our app no longer has: {stale}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.adversarial.test_openapi_contract")
    parser.add_argument("--write-fixture", action="store_true", help=f"rewrite {FIXTURE.name}")
    parser.add_argument("reference", nargs="?", type=Path, help="reference OpenAPI JSON")
    args = parser.parse_args(argv)
    source = args.reference or reference_path()
    if source is None or not args.write_fixture:
        parser.error("give --write-fixture and a reference (or DUMONT_REFERENCE_OPENAPI)")
    facts = operation_facts(json.loads(source.read_text(encoding="utf-8")))
    document = {
        "about": "Facts derived from the Dumont API v1 OpenAPI (reference/dumont-openapi-v1.json): "
        "operations, parameter names, request body field names. Regenerate with "
        "python -m tests.adversarial.test_openapi_contract --write-fixture",
        "operations": facts,
    }
    FIXTURE.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(facts)} operations to {FIXTURE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
