"""Entropy model of crdr: hyperprior, channel-wise autoregressive context, and coding."""
