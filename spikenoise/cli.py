"""The ``spikenoise`` command line: one sub-command per study.

Each study module exposes ``add_arguments(parser)`` and ``main(args) -> int`` (see
:mod:`spikenoise.studies.scaffold`); they are imported lazily so ``spikenoise --help`` stays
fast. Adding a study: one new module in ``spikenoise/studies/`` and one line in ``COMMANDS``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS = {
    "compare": ("spikenoise.studies.compare", "paper 000: four KWS models under static/dynamic NVM errors"),
    "bitflip": ("spikenoise.studies.bitflip", "paper 001: bit flips in float/int8 weights, midpoint noise level"),
    "bnn": ("spikenoise.studies.bnn", "paper 002: binarized networks with weight bit errors"),
    "analog": ("spikenoise.studies.analog", "paper 003: analog tiles, programming variation, ADCs"),
    "resilience": ("spikenoise.studies.resilience", "paper 004: synapse + input noise, MLP vs CNN vs recurrent"),
    "drift": ("spikenoise.studies.drift", "KWS accuracy over time on drifting multi-level PCM (aihwkit statistics)"),
}


def main(argv: list[str] | None = None) -> int:
    from spikenoise.studies.scaffold import run_command

    parser = argparse.ArgumentParser(prog="spikenoise", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == wanted:  # import only the study that is run
            mod = importlib.import_module(module)
            mod.add_arguments(p)
            p.add_argument("--debug", action="store_true", help="show the traceback of an error")
            p.set_defaults(_main=mod.main)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return run_command(args.command, args._main, args)


if __name__ == "__main__":
    raise SystemExit(main())
