"""The `logtide` command: one entry point; each subcommand is defined beside the code it drives.

Subcommands are imported only when run (`logtide ship` loads the shipper, not Faust, the sinks'
clients or the services manager: the shipper's start-up is part of its throughput), and subcommand
modules keep heavy imports inside their functions, so `logtide --help` stays fast.
"""

from __future__ import annotations

import importlib

import click

from logtide import __version__

# name -> "module:attribute" of the click command
SUBCOMMANDS = {
    "config": "logtide.config_command:config",
    "topics": "logtide.topics_admin:topics",
    "ship": "logtide.ship_command:ship",
    "services": "logtide.services:services",
    "streams": "logtide.streams_command:streams",
    "run": "logtide.run_command:run",
    "demo": "logtide.run_command:demo",
    "sink": "logtide.sink_command:sink",
    "backtest": "logtide.backtest:backtest",
    "archive": "logtide.archive_command:archive",
    "alerts": "logtide.alerts_command:alerts",
    "replay": "logtide.replay_command:replay",
    "anomalies": "logtide.anomalies_command:anomalies",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported the first time they are looked up."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attr = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, lazy=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logtide")
def main() -> None:
    """logtide: ship, stream, detect and sink logs and metrics."""


if __name__ == "__main__":
    main()
