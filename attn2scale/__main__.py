"""``python -m attn2scale <command> ...``: the project's command line."""

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"convert": "attn2scale.cli.convert"}
    if not argv or argv[0] not in commands:
        print("usage: python -m attn2scale {%s} ..." % ",".join(commands), file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(commands[argv[0]]).main(argv[1:], prog=f"attn2scale {argv[0]}")


if __name__ == "__main__":
    sys.exit(main())
