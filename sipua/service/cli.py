"""The ``sipua serve`` command (registered on the main CLI by ``sipua.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .config import ConfigError, load_settings


def serve(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML configuration file.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address the SIP listeners bind to.")] = None,
    sip_port: Annotated[
        int | None, typer.Option(help="SIP UDP and TCP port (0: ephemeral).")
    ] = None,
    tls_port: Annotated[int | None, typer.Option(help="SIP TLS port (0: ephemeral).")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP API port (0: ephemeral).")] = None,
    http_host: Annotated[str | None, typer.Option(help="Address the HTTP API binds to.")] = None,
    public_host: Annotated[
        str | None, typer.Option(help="Host name put in SIP URIs and stream URLs.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where the database, API key and TLS files live.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
    uvloop: Annotated[
        bool, typer.Option("--uvloop", help="Run on uvloop (pip install 'sipua[uvloop]').")
    ] = False,
) -> None:
    """Run the SIP edge: UDP/TCP/TLS listeners, call control, media and the HTTP API.

    Every option has a default; settings come from defaults < --config file < SIPUA_*
    environment < these flags.
    """
    overrides: dict[str, object] = {
        "data_dir": data_dir,
        "log_level": log_level,
        "log_format": log_format,
        "public_host": public_host,
    }
    sip: dict[str, object] = {}
    if host is not None:
        sip["host"] = host
    if sip_port is not None:
        sip["udp_port"] = sip_port
        sip["tcp_port"] = sip_port
    if tls_port is not None:
        sip["tls_port"] = tls_port
    http: dict[str, object] = {}
    if http_port is not None:
        http["port"] = http_port
    if http_host is not None:
        http["host"] = http_host
    for key, value in (("sip", sip), ("http", http)):
        for sub, v in value.items():
            overrides[f"{key}__{sub}"] = v
    if uvloop:
        overrides["event_loop"] = "uvloop"
    try:
        settings = load_settings(config, **overrides)
    except ConfigError as e:
        typer.echo(f"sipua: invalid configuration:\n{e}", err=True)
        raise typer.Exit(2) from None
    from .server import run

    try:
        run(settings, use_uvloop=settings.event_loop == "uvloop")
    except OSError as e:
        typer.echo(f"sipua: cannot start: {e}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


if __name__ == "__main__":  # python -m sipua.service.cli
    _app = typer.Typer(add_completion=False)
    register(_app)
    _app.command("version")(lambda: typer.echo("sipua"))
    _app()
