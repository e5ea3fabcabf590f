#!/usr/bin/env python
"""Convert an original Caffe model (caffemodel + prototxt) to safetensors + a JSON sidecar.

    python tools/convert_caffe.py MODEL.caffemodel --prototxt test.prototxt --out weights/x.safetensors
    python tools/convert_caffe.py MODEL.caffemodel --model deeplab_largefov --pool5a --out weights/x.safetensors \
        --verify reference.h5:in_97x97

Same as ``python -m attn2scale convert``; see ``--help`` and weights/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attn2scale.cli.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
