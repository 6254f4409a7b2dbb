"""``vramfit`` entry point: builds the subcommand parsers and turns expected errors into exit codes.

Exit codes: 0 success / fits, 1 does not fit (or a regression in ``check``), 2 bad input, 3 a bug
(an unexpected exception: its traceback, then one line saying so).
Subcommand modules must not import torch, transformers, matplotlib or pandas at module level:
building the parser imports every one of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> module in vramfit.cli; each module has add_parser(subparsers) and run(args) -> int.
SUBCOMMANDS = {
    "estimate": "estimate_cmd",
    "plan": "plan_cmd",
    "probe": "probe_cmd",
    "models": "models_cmd",
    "gpus": "gpus_cmd",
    "report": "report_cmd",
    "check": "check_cmd",
}

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_INPUT, EXIT_INTERNAL_ERROR = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's default prints usage too)
        if message.startswith("argument "):  # "--rank: ...", as every other error names its flag
            message = message[len("argument ") :]
        self.exit(
            EXIT_BAD_INPUT,
            f"vramfit {self.prog.split(' ', 1)[-1]}: error: {message}\n".replace(
                "vramfit vramfit", "vramfit"
            ),
        )


def build_parser() -> argparse.ArgumentParser:
    from vramfit import __version__

    parser = _Parser(
        prog="vramfit",
        description="Will this fine-tuning run fit on my GPU, why, and what is the best run that does?",
        epilog="Example: vramfit plan --model mistral-7b --vram 4GB",
    )
    parser.add_argument("--version", action="version", version=f"vramfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in SUBCOMMANDS.values():
        try:
            mod = importlib.import_module(f"vramfit.cli.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"vramfit.cli.{module}":
                raise
            continue  # subcommand not built yet
        mod.add_parser(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def main(argv: list[str] | None = None) -> int:
    from vramfit.cli.pipes import quiet_broken_pipe
    from vramfit.errors import InputError, VramfitError
    from vramfit.inputs import check_text_flags

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a flag argparse refused (its one line is printed)
        return e.code if isinstance(e.code, int) else EXIT_BAD_INPUT
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    with quiet_broken_pipe():  # `vramfit models | head -1`: the command's own exit code, nothing more
        try:
            check_text_flags(_subparser(parser, args.command), args)
            return int(args.run(args) or 0)
        except (InputError, VramfitError) as e:
            print(f"vramfit {args.command}: error: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(f"vramfit {args.command}: interrupted", file=sys.stderr)
            return 130
        except Exception:  # a bug, not a verdict: never exit 1 ("does not fit", "regression")
            import traceback

            traceback.print_exc()
            print(
                f"vramfit {args.command}: internal error (a bug in vramfit; please report it with the "
                "command you ran)",
                file=sys.stderr,
            )
            return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
