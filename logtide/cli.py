"""The `logtide` command: one entry point; each subcommand is defined beside the code it drives.

Subcommand modules keep heavy imports (Faust, scikit-learn, Kafka clients) inside their functions,
so `logtide --help` stays fast.
"""

from __future__ import annotations

import click

from logtide import __version__
from logtide.alerts_command import alerts
from logtide.anomalies_command import anomalies
from logtide.archive_command import archive
from logtide.backtest import backtest
from logtide.config_command import config
from logtide.replay_command import replay
from logtide.run_command import demo, run
from logtide.services import services
from logtide.ship_command import ship
from logtide.sink_command import sink
from logtide.streams_command import streams
from logtide.topics_admin import topics


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="logtide")
def main() -> None:
    """logtide: ship, stream, detect and sink logs and metrics."""


main.add_command(config)
main.add_command(topics)
main.add_command(ship)
main.add_command(services)
main.add_command(streams)
main.add_command(run)
main.add_command(demo)
main.add_command(sink)
main.add_command(backtest)
main.add_command(archive)
main.add_command(alerts)
main.add_command(replay)
main.add_command(anomalies)

if __name__ == "__main__":
    main()
