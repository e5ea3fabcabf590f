"""Training as the authors' Caffe trained: the SGD solver and its learning-rate policies
(``solver``), the losses (``losses``), configs (``config``), the loop (``trainer``),
checkpoints (``checkpoint``) and torchrun support (``distributed``)."""
