"""The `crdr` command line: the group ``main`` and its commands.

Each command lives in its own module (:mod:`.encode`, :mod:`.decode`, :mod:`.info`,
:mod:`.evaluate` for ``crdr eval``, :mod:`.bench`, :mod:`.train`; ``crdr view`` in
:mod:`crdr_codec.view.command`) as thin glue over library calls; what they share is in
:mod:`.common`, which also describes what encode and decode print.

Heavy modules (torch, the model) are imported inside command bodies, so `crdr --help`,
`crdr --version` and `crdr info` start fast. Every user-caused failure (a CrdrError) is
printed as one line on stderr with a non-zero exit code; genuine bugs keep their
traceback.

Exit codes, one rule: 2 for a usage error, i.e. anything wrong with the command line
itself (click's own errors, and crdr's ParameterError / UsageError: an option value out
of range, options that do not go together, a missing output); 1 for an error with a file
(missing, unreadable, corrupt, existing, unwritable, a model that cannot be found);
3 for ``crdr encode --bpp`` when a target could not be reached; 130 after Ctrl-C.
"""

from __future__ import annotations

import os
import sys

import click

from ..errors import CrdrError, ParameterError
from ..view.command import view
from . import bench, decode, encode, evaluate, export, info, train
from .common import error_line
from .encode import EXIT_BPP_NOT_REACHED

__all__ = ["EXIT_BPP_NOT_REACHED", "EXIT_USAGE", "main", "version_text"]

#: Exit code of a usage error (the command line itself is wrong), as click's own errors.
EXIT_USAGE = 2


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ParameterError as e:
            click.echo(error_line(e), err=True)
            sys.exit(EXIT_USAGE)
        except CrdrError as e:
            click.echo(error_line(e), err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("crdr: interrupted", err=True)
            sys.exit(130)


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def version_text(env=None) -> str:
    """What ``crdr --version`` prints: crdr's version, the default model's id (read
    without torch, see :func:`crdr_codec.weights_search.model_id_of`) and the versions
    of ONNX Runtime, numpy, constriction, torch (or that it is not installed) and Python
    (from the package metadata: nothing is imported)."""
    import platform

    from .. import __version__
    from ..weights_search import ENV_DEFAULT, default_weights_file, model_id_of

    env = os.environ if env is None else env
    path = default_weights_file(env)
    where = f"{path}, from ${ENV_DEFAULT}" if env.get(ENV_DEFAULT) else str(path)
    if not path.is_file():
        model = f"default model: none (no weights file at {where})"
    else:
        mid = model_id_of(path, env=env)
        model = (f"default model {mid.hex()} ({where})" if mid is not None else
                 f"default model: unknown ({where} is not a crdr weights file)")
    return (f"crdr {__version__}\n{model}\n"
            f"onnxruntime {_package_version('onnxruntime')}, numpy {_package_version('numpy')}, "
            f"constriction {_package_version('constriction')}, torch {_package_version('torch')}, "
            f"Python {platform.python_version()}")


def _print_version(ctx, _param, value) -> None:
    if not value or ctx.resilient_parsing:
        return
    click.echo(version_text())
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version,
              help="Show crdr's version, the default model id, the versions of the libraries "
                   "it runs on, and exit.")
def main() -> None:
    """crdr: learned image compression with rate (q) and realism (beta) control.

    \b
      crdr encode photo.png photo.crdr --q 2.5
      crdr decode photo.crdr out.png --beta 3.84
      crdr info photo.crdr
    """


for _command in (encode.encode, decode.decode, info.info, view, export.export,
                 evaluate.eval_command, bench.bench, train.train):
    main.add_command(_command)
del _command
