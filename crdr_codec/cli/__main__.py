"""``python -m crdr_codec.cli`` (and ``torchrun -m crdr_codec.cli``) runs the ``crdr`` command."""

from . import main

if __name__ == "__main__":
    main()
