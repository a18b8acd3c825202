"""`grade serve lti ...`: the LMS platforms this service trusts, the tool's own keys, rosters
(thin commands over grader.service.lti_*; see docs/lti.md)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from grader.cli.batch import _fail
from grader.cli.serve import _db_option
from grader.errors import GraderError


def _lti(db: Path | str):  # type: ignore[no-untyped-def]
    from grader.service.lti_store import LtiStore
    from grader.service.store import Store

    return LtiStore(Store(db))


@click.group("lti")
def lti_group() -> None:
    """The service as an LTI 1.3 tool: platforms, keys, configuration."""


@lti_group.command("add-platform")
@_db_option
@click.option("--issuer", required=True, help="The platform's issuer (iss), e.g. https://canvas.instructure.com.")
@click.option("--client-id", required=True, help="The client id the platform gave this tool.")
@click.option("--deployment-id", required=True, help="The deployment id of the tool's installation.")
@click.option("--auth-login-url", required=True, help="The platform's OIDC authorization endpoint.")
@click.option("--auth-token-url", required=True, help="The platform's OAuth2 token endpoint.")
@click.option("--keyset-url", required=True, help="The platform's public keys (JWKS).")
def add_platform(db: Path | str, issuer: str, client_id: str, deployment_id: str, auth_login_url: str,
                 auth_token_url: str, keyset_url: str) -> None:
    """Trust an LMS: its launches sign users in, grades go back to it."""
    try:
        pid = _lti(db).add_platform(issuer, client_id, deployment_id, auth_login_url, auth_token_url, keyset_url)
    except GraderError as e:
        _fail(str(e))
    click.echo(f"platform {pid}: {issuer} (client {client_id}, deployment {deployment_id})")


@lti_group.command("platforms")
@_db_option
def platforms(db: Path | str) -> None:
    """The registered platforms, one a line."""
    try:
        for p in _lti(db).platforms():
            click.echo(f"{p.id}\t{p.issuer}\t{p.client_id}\t{p.deployment_id}\t{p.keyset_url}")
    except GraderError as e:
        _fail(str(e))


@lti_group.command("rotate-key")
@_db_option
def rotate_key(db: Path | str) -> None:
    """A new signing key; the old one stays published a week for tokens already signed."""
    from grader.service.lti_tokens import new_key

    try:
        kid = new_key(_lti(db), retire_others=True)
    except GraderError as e:
        _fail(str(e))
    click.echo(f"new signing key {kid}; the previous key stays in the JWKS for 7 days")


@lti_group.command("sync-roster")
@_db_option
def sync_roster(db: Path | str) -> None:
    """The roster of every course a launch came from, by Names and Role Provisioning."""
    from grader.service.core import Service
    from grader.service.lti_passback import Sender
    from grader.service.lti_roster import sync

    try:
        lti = _lti(db)
        lines = sync(Sender(Service(lti.store, {}, "")))
    except GraderError as e:
        _fail(str(e))
    for line in lines or ["no course yet: the roster is known after a first launch from the course"]:
        click.echo(line)


@lti_group.command("config")
@click.option("--url", required=True, help="The service's public address (https://...).")
def config(url: str) -> None:
    """The tool's configuration JSON (Canvas: Developer Keys -> LTI Key -> Paste JSON)."""
    from grader.service.lti_app import tool_config

    click.echo(json.dumps(tool_config(url.rstrip("/"), []), indent=2))
