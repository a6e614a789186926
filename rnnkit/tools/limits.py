"""Limits of generation's settings, shared by the command line and the Python API."""

# Seeds are below 2^32: sample n draws from [seed, n], and numpy reads a larger seed as 32-bit
# words with its high zero words dropped (2^32 k + s gave seed s's later samples).
SEED_LIMIT = 2 ** 32
# The lowest temperature: any float32 logit divided by it stays finite in float64 (at 1e-310
# logits / T overflowed to inf, and the probabilities were NaN: token 0 every step).
MIN_TEMPERATURE = 1e-3
# The most tokens one sample may ask for (beam search's length penalty takes it as a float).
MAX_LENGTH = 10 ** 9
