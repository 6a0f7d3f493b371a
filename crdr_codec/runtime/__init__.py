"""The product engine: what encode, decode, info, view and the Python API run on.

ONNX Runtime runs the transforms (g_a, h_a, g_s), numpy the exact integer entropy model,
constriction the range coder. Nothing here imports torch; the torch side
(:mod:`crdr_codec.nn`: training, refinement, export) shares this package's coding
procedure (:mod:`.latent`) and coder (:mod:`.coder`).
"""
