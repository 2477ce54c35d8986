"""Builds the API client for a command: the configured URL, or the embedded local server."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer

from dumont_plan.cli import main
from dumont_plan.cli.embedded import local_credentials, running_server, start_server
from dumont_plan.client import DumontClient
from dumont_plan.client.auth import token_of
from dumont_plan.client.base import tls_for
from dumont_plan.config import (
    Endpoint,
    config_retry_deadline,
    load_token,
    resolve_endpoint,
    save_token,
)
from dumont_plan.errors import AuthenticationError, BadRequestError, ConfigError, DumontError

if TYPE_CHECKING:
    import httpx

HTTP_TIMEOUT = 60.0


def api_url_of(ctx: typer.Context) -> str | None:
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    value = obj.get("api_url")
    return str(value) if value else None


def _local_login(url: str, endpoint: Endpoint) -> str:
    """Log the local user in, registering it on first use.

    Two CLI processes may race here on a fresh data dir: the loser of the register race gets
    400 (already exists) and logs in with the same credentials (`local_credentials` is shared).
    """
    import httpx

    creds = local_credentials()
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as http:
        bare = DumontClient(http)
        try:
            answer = bare.auth.login(creds["email"], creds["password"])
        except AuthenticationError:
            try:
                answer = bare.auth.register(creds["email"], creds["password"])
            except BadRequestError:
                try:
                    answer = bare.auth.login(creds["email"], creds["password"])
                except AuthenticationError as exc:
                    raise AuthenticationError(
                        "the local control plane refused the local user's password",
                        "remove local-user.json and the database from the data dir to start afresh",
                    ) from exc
    token = token_of(answer)
    save_token(endpoint, token, creds["email"])
    return token


def resolve_target(ctx: typer.Context) -> tuple[Endpoint, str]:
    """The endpoint and its base URL, starting the embedded server when none is configured."""
    endpoint = resolve_endpoint(api_url_of(ctx))
    if endpoint.url is not None:
        return endpoint, endpoint.url
    return endpoint, start_server().url


def complete_ids(path: str, key: str, incomplete: str) -> list[str]:
    """Shell completion of ids: the `key` of the objects `GET path` lists, starting with
    `incomplete`. Quick and silent: nothing is started (an embedded server only when it runs),
    nothing is printed, any failure completes nothing."""
    import httpx

    try:
        endpoint = resolve_endpoint()
        url = endpoint.url
        if url is None:
            running = running_server()
            if running is None:
                return []
            url = running.url
        token = load_token(endpoint)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx.get(url + path, headers=headers, timeout=2.0, verify=tls_for(url))
        items = next((v for v in answer.json().values() if isinstance(v, list)), [])
        ids = [str(item.get(key)) for item in items if isinstance(item, dict)]
    except (DumontError, httpx.HTTPError, ValueError, AttributeError):
        return []
    return sorted(i for i in ids if i.startswith(incomplete))


def http_client(url: str) -> httpx.Client:
    """The httpx client of a command's API calls, made when the first one goes out: a plan
    whose reads were all answered at start-up (cli/early.py) never loads httpx."""
    import httpx

    return httpx.Client(base_url=url, timeout=HTTP_TIMEOUT, verify=tls_for(url))


def _with_deadline(client: DumontClient) -> DumontClient:
    """The client with the retry deadline of the environment or the config file, if set."""
    deadline = config_retry_deadline()
    if deadline is not None:
        client.transport.deadline = deadline
    return client


def open_client(ctx: typer.Context, *, login: bool = True) -> DumontClient:
    """A client for this command. Against the embedded server, log the local user in
    (and again whenever its token is refused), unless `login=False` (the `auth` commands)."""
    endpoint = resolve_endpoint(api_url_of(ctx))
    token = load_token(endpoint)  # a damaged credentials file fails before anything starts
    endpoint, url = resolve_target(ctx)
    client = _with_deadline(DumontClient(lambda: http_client(url), token))
    early = main.early_reads()
    if early is not None and early.url == url:
        client.transport.preloaded = early.take  # `dumont plan`'s job list, read at start-up
    if endpoint.url is not None or not login:
        return client

    def reauthenticate() -> str | None:
        if os.environ.get("DUMONT_TOKEN"):  # honoured, never silently swapped for the local one
            raise ConfigError(
                f"DUMONT_TOKEN was refused by the local control plane at {url}",
                "unset DUMONT_TOKEN to use the local account, or set a token of this server",
            )
        return _local_login(url, endpoint)

    client.transport.reauthenticate = reauthenticate
    if token is None:
        client.token = reauthenticate()
    return client
