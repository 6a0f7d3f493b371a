"""The default model as the runtime loads it (``crdr-lite.crdrm``, see
:mod:`crdr_codec.runtime.model`); installed with the package."""
