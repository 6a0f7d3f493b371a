"""Exception hierarchy of crdr.

Every error a user can cause (bad file, bad argument, wrong model) derives from
:class:`CrdrError`; the command line prints those as one line and exits non-zero.
Each subclass also derives from the matching built-in so callers can catch either.
Only the standard library is imported here.
"""


class CrdrError(Exception):
    """Root of all user-facing crdr errors."""


class BitstreamError(CrdrError, ValueError):
    """A .crdr file is not valid: wrong magic, unknown version, truncated, corrupt."""


class PayloadError(BitstreamError):
    """The payload of a .crdr file does not decode: damaged, forged, or from a foreign coder."""


class ModelMismatchError(CrdrError, ValueError):
    """A .crdr file was written by a different model than the one loaded."""


class LimitError(CrdrError, ValueError):
    """An input is larger than a safety limit (--max-pixels); the message says how to raise it."""


class ImageError(CrdrError, ValueError):
    """An input image cannot be read or is not supported (alpha, unknown format)."""


class WeightsError(CrdrError, ValueError):
    """A weights file is missing, unreadable or of an unknown layout."""


class ParameterError(CrdrError, ValueError):
    """A rate or realism parameter (or another option's value) is out of range or
    malformed. The command line reports it as a usage error (exit code 2)."""


class UsageError(ParameterError):
    """The command line is used wrongly: options that do not go together, a missing or
    extra argument, an output name that cannot be meant (exit code 2, as click's own
    errors). What goes wrong with a file itself is a :class:`CrdrError` (exit code 1)."""


class DependencyError(CrdrError, ImportError):
    """An optional package needed for the requested operation is not installed."""


class OutputError(CrdrError, OSError):
    """An output file cannot be written (missing directory, no permission, disk full)."""


class OutputExistsError(OutputError, FileExistsError):
    """An output file already exists and replacing it was not allowed (``crdr --force``)."""


class ResumeError(CrdrError, ValueError):
    """An output folder holds results that cannot be continued (other model or settings)."""


# ------------------------------------------------------------------ notices (warnings)


class InputNotice(UserWarning):
    """Something about an input image the user should know, though it was read:
    raised with :func:`warnings.warn`, whose message starts with the input's name.
    The command line shows each as one ``crdr: note:`` line (hidden by ``--quiet``)."""


class PrecisionWarning(InputNotice):
    """An input image had more than 8 bits per channel and was reduced to 8 bits."""


class FramesWarning(InputNotice):
    """An input file holds several frames (animation, multi-page TIFF); only the first
    is read."""
