"""The numbers reported for a loss, in one place: perplexity and bits per token.

A loss is the mean cross-entropy in nats per token. Perplexity is exp(loss) (inf where that
overflows), bits per token loss / ln 2 (bits per character at char level).
"""
import math

LN2 = math.log(2)


def perplexity(loss):
    return math.exp(loss) if loss < 700.0 else math.inf


def bits(loss):
    return loss / LN2


def show_perplexity(value):
    """A perplexity for people: 12.34, 1.23e+05, inf."""
    if not math.isfinite(value):
        return "inf" if value > 0 else str(value)
    return f"{value:.2f}" if value < 1e5 else f"{value:.3g}"
