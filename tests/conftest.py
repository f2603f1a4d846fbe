"""Shared test settings: strict rank promotion, and helpers for counting compilations."""

import jax

# Implicit rank promotion hides shape bugs ([T] + [T, 1] silently becomes [T, T]).
jax.config.update("jax_numpy_rank_promotion", "raise")
