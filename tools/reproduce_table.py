"""The papers' tables beside ours, or the built-in mini reproduction (``attn2scale table``).

    python tools/reproduce_table.py --mini [--quick]        # no downloads, CPU
    python tools/reproduce_table.py --table person_part [--train]
    python tools/reproduce_table.py --table all
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attn2scale.cli.table import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(prog="tools/reproduce_table.py"))
