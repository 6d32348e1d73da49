"""`delegate-mcp specialists`: the specialists, their model chains, and which models are usable now and why."""

from __future__ import annotations

import argparse
import json

from server.commands.base import EXIT_OK, Command, Invocation, Subcommands
from server.commands.cli_output import catalog_report, format_catalog_report


def add(commands: Subcommands, common: argparse.ArgumentParser) -> None:
    """The specialists subcommand."""
    listing = commands.add_parser(
        "specialists", parents=[common], help="list specialists, their model chains and which models are usable now"
    )
    listing.add_argument("--json", action="store_true", help="print the listing as JSON")


def run(call: Invocation) -> int:
    """Print the listing."""
    report = catalog_report(call.catalog, call.settings, call.environ)
    print(json.dumps(report, indent=2) if call.args.json else format_catalog_report(report))
    return EXIT_OK


# It still builds the Delegator first, as it always has: a store that cannot be opened stops it with exit 2.
COMMAND = Command("specialists", add, run, leave_at_once=False)
