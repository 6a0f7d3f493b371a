"""Training of crdr models (stages 1-3). Imports compressai; never used by encode/decode."""
