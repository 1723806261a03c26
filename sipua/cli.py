"""The ``sipua`` command line: ``sipua serve`` and ``sipua check``."""

from __future__ import annotations

import typer

from sipua.service.cli import register as register_serve

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="sipua: an open-source SIP edge for voice sessions.",
)
register_serve(app)


@app.callback()
def _root() -> None:
    """sipua: an open-source SIP edge for real-time voice sessions."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
