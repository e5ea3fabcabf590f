"""attn2scale: Attention to Scale (Chen et al., CVPR 2016) in PyTorch.

Caffe-faithful layers and models with fused CPU/CUDA kernels for the
score-map resizing, the scale merge and the final upsample + argmax.
"""

import torch  # noqa: F401  (loads libtorch, which attn2scale._C links against)

__version__ = "0.1.0"
