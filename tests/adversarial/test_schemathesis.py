"""schemathesis against the local control plane's own OpenAPI, in-process (ASGI).

Every /api/v1 operation gets generated requests (valid and invalid; at most MAX_EXAMPLES per
operation in the fuzzing phase, plus the explicit examples and the schema's boundary cases),
with a fresh valid bearer token: no response may be a 500, and every response must match the
schema the app declares for it.

Generated jobs and instances must not run arbitrary generated shell: the fields that run
something (job `command`/`setup_script`/`pip_packages`/sources, instance `onstart_cmd`,
endpoint `command`) are replaced by harmless values before the request is sent; every other
field stays as generated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from dumont_plan.server.app import create_app
from dumont_plan.server.security import issue_token
from dumont_plan.server.settings import ServerSettings
from tests.support import PASSWORD

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, response_schema_conformance]
OPENAPI = "/api/v1/openapi.json"


@dataclass
class Api:
    app: Any
    secret: str
    email: str

    def token(self) -> str:
        # A fresh token per request: a generated logout revokes only its own token, a
        # generated logout-all moves the generation read here.
        row = self.app.state.dumont.store.query_one(
            "SELECT id, token_generation FROM users WHERE email = ?", (self.email,)
        )
        return issue_token(
            self.secret,
            self.email,
            3600,
            user_id=int(row["id"]),
            generation=int(row["token_generation"]),
        )


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    from fastapi.testclient import TestClient

    app = create_app(ServerSettings(data_dir=tmp_path_factory.mktemp("fuzz")), background=False)
    email = f"fuzz-{uuid.uuid4().hex[:10]}@example.com"
    with TestClient(app) as http:
        response = http.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.text
        yield Api(app, app.state.dumont.secret, email)


@pytest.fixture(scope="module")
def api_schema(api: Api) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "seed": 20240601,
            "generation": {"database": "none"},
        }
    )
    return schemathesis.openapi.from_asgi(OPENAPI, api.app, config=config).include(
        path_regex=r"^/api/v1/"
    )


# Fields that make the control plane run something: pinned to harmless values.
SAFE_JOB = {
    "source": "command",
    "command": "true",
    "setup_script": None,
    "pip_packages": None,
    "git_url": None,
    "hf_repo": None,
}


def make_harmless(case: Any) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if case.method.upper() == "POST" and case.path == "/api/v1/jobs/":
        body.update(SAFE_JOB)
    if case.method.upper() == "POST" and case.path == "/api/v1/instances":
        body.pop("onstart_cmd", None)
    if case.path.startswith("/api/v1/serverless/endpoints"):
        body.pop("command", None)  # an endpoint without a command starts no worker


def run_operation(operation: Any, mode: GenerationMode, api: Api) -> None:
    """MAX_EXAMPLES generated requests to one operation; raises on the first failed check."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def check(case: Any) -> None:
        make_harmless(case)
        response = case.call(headers={"Authorization": f"Bearer {api.token()}"})
        case.validate_response(response, checks=CHECKS)

    check()


@pytest.mark.slow
def test_api_never_errors_and_matches_its_schema(api_schema: Any, api: Api) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 25, [op.label for op in operations]
    failures: list[str] = []
    skipped: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                run_operation(operation, mode, api)
            except Unsatisfiable:
                # No input of this operation can be made invalid (e.g. only string path
                # parameters): there is no negative case to send.
                assert mode is GenerationMode.NEGATIVE, operation.label
                skipped.append(operation.label)
            except Exception as exc:  # every failing operation is reported, not just the first
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(skipped) < len(operations) / 2, skipped
