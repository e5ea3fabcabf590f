"""The errors and warnings of reading Caffe files (one module, so every reader part can raise them)."""


class CaffeFormatError(ValueError):
    """A Caffe file that cannot be read or does not fit its net."""


class LenientReadWarning(UserWarning):
    """Fields of a data layer that ``lenient=True`` reading dropped because this schema lacks them."""
