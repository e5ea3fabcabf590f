"""``attn2scale <command> ...`` (also ``python -m attn2scale``): the project's command line."""

import importlib
import sys

# command -> module with main(argv, prog); the one list of subcommands.
COMMANDS = {
    "convert": "attn2scale.cli.convert",
    "prepare-data": "attn2scale.cli.prepare_data",
    "train": "attn2scale.cli.train",
    "score": "attn2scale.cli.score",
    "eval": "attn2scale.cli.eval",
    "predict": "attn2scale.cli.predict",
    "visualize": "attn2scale.cli.visualize",
    "table": "attn2scale.cli.table",
}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print("usage: attn2scale {%s} ..." % ",".join(COMMANDS), file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:], prog=f"attn2scale {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
