"""``python -m crdr_codec`` is the ``crdr`` command."""

from .cli import main

main(prog_name="crdr")
