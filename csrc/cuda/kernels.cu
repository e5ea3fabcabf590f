// The CUDA build of the launchers (see launchers.inl).
#include "launchers.inl"
