"""`dumont auth login|logout|me|register|settings`."""

from __future__ import annotations

import getpass
import sys

import typer

from dumont_plan.cli.capabilities import warn_ignored
from dumont_plan.cli.output import OutputFormat, OutputOpt, console, emit_json, print_fields
from dumont_plan.cli.session import open_client, resolve_target
from dumont_plan.client.auth import token_of
from dumont_plan.config import forget_token, save_token
from dumont_plan.errors import AuthenticationError, ConfigError, RateLimitedError

app = typer.Typer(help="Log in to a Dumont API and see who you are.", no_args_is_help=True)


@app.command()
def login(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="Account e-mail."),
    password: str | None = typer.Argument(
        None,
        help="Account password; asked for (hidden) when left out, read from stdin when piped.",
        show_default=False,
    ),
) -> None:
    """Log in and store the token (mode 0600) for this API URL."""
    if password is None:
        password = read_password()
    client = open_client(ctx, login=False)
    endpoint, _ = resolve_target(ctx)
    try:
        answer = client.auth.login(email, password)
    except AuthenticationError as exc:
        exc.hint = "check the e-mail and password, or create an account with `dumont auth register`"
        raise
    except RateLimitedError as exc:
        exc.hint = "the server refuses logins for this account or address for a while"
        raise
    save_token(endpoint, token_of(answer), str(answer.get("user", email)))
    console.print(f"Logged in as {answer.get('user', email)}.", markup=False)


@app.command()
def register(
    ctx: typer.Context,
    email: str = typer.Argument(..., help="Account e-mail."),
    password: str = typer.Argument(..., help="Password: at least 8 characters, not all spaces."),
) -> None:
    """Create an account and log in with it."""
    client = open_client(ctx, login=False)
    endpoint, _ = resolve_target(ctx)
    answer = client.auth.register(email, password)
    save_token(endpoint, token_of(answer), str(answer.get("user", email)))
    console.print(f"Registered and logged in as {answer.get('user', email)}.", markup=False)


@app.command()
def logout(
    ctx: typer.Context,
    everywhere: bool = typer.Option(
        False, "--all", help="Revoke every token of this account, on every machine."
    ),
) -> None:
    """Revoke the token on the server and forget it here."""
    client = open_client(ctx, login=False)
    endpoint, _ = resolve_target(ctx)
    if everywhere and not client.token:
        raise ConfigError("not logged in: `--all` needs a valid token of the account")
    if everywhere:
        client.auth.logout_all()
    elif client.token:
        warn_ignored(client, [("logout", "auth.revocable-logout")])
        client.auth.logout()
    forget_token(endpoint)
    console.print("Logged out everywhere." if everywhere else "Logged out.")


def read_password() -> str:
    """The password from a hidden prompt on a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        try:
            password = getpass.getpass("Password: ")
        except EOFError:
            password = ""
    else:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError("no password given", "type it at the prompt, or pipe it on stdin")
    return password


@app.command()
def me(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """Show the logged-in user."""
    answer = open_client(ctx).auth.me()
    if output is OutputFormat.json:
        emit_json(answer)
        return
    user = answer.get("user") or {}
    print_fields({"email": user.get("email"), "authenticated": answer.get("authenticated")})


@app.command()
def settings(
    ctx: typer.Context,
    vast_key: str | None = typer.Option(
        None,
        "--vast-key",
        help="The provider (Vast.ai) API key the server uses for your instances and jobs; "
        "`-` reads it from stdin. Never printed.",
    ),
) -> None:
    """Set your account's provider key on the server (PUT /api/v1/settings).

    What to do when a command says "Vast.ai API key not configured. Please update settings."
    """
    if vast_key is None:
        raise ConfigError("nothing to set", "give --vast-key KEY (or --vast-key - to read stdin)")
    key = sys.stdin.readline().strip() if vast_key == "-" else vast_key.strip()
    if not key:
        raise ConfigError("--vast-key: the key is empty", "give the provider's API key")
    open_client(ctx).auth.update_settings(vast_api_key=key)
    console.print("Provider key saved on the server for this account.")
