"""Loss of a model on text: nats per token, perplexity, bits per token.

    from rnnkit.evaluate import evaluate_checkpoint
    evaluate_checkpoint("runs/x/best.h5", corpus="corpus.h5", split="test")
    evaluate_checkpoint("runs/x/best.h5", text="other.txt")

The ids are laid out as N parallel streams (the training layout) and fed T steps at a time with
the hidden state carried across batches, so every token after a stream's first is predicted
from all that came before it in its stream. The last, shorter batch is evaluated too; only the
< N tokens that do not fill the streams evenly are left out.
"""
import math
import time

import numpy as np

from rnnkit import threads

LN2 = math.log(2)


def report(loss_sum, count):
    """The numbers we report for a summed loss over `count` predicted tokens."""
    loss = loss_sum / count if count else math.nan
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bits_per_token": loss / LN2,
            "tokens": int(count)}


def batches_of(ids, N, T):
    """(x, y) batches of an in-memory id array laid out as N streams (the last may be short)."""
    ids = np.asarray(ids)
    S = (len(ids) - 1) // N
    if S < 1:
        raise ValueError(f"{len(ids)} tokens are too few for {N} streams (need {N + 1})")
    xs = ids[:N * S].reshape(N, S)            # stream i is ids[i*S : (i+1)*S]
    ys = ids[1:N * S + 1].reshape(N, S)
    for t in range(0, S, T):
        yield (np.ascontiguousarray(xs[:, t:t + T], np.int32),
               np.ascontiguousarray(ys[:, t:t + T], np.int32))


def evaluate_batches(model, batches, N, limit=0):
    """(summed loss in nats, tokens) of `model` on an iterable of (x, y) batches with N rows,
    the state carried from batch to batch and starting at zero; at most `limit` batches (0:
    all)."""
    state = model.init_state(N)
    total, count = 0.0, 0
    threads.begin()
    for i, (x, y) in enumerate(batches):
        if limit and i >= limit:
            break
        started = time.perf_counter()
        loss_sum, n, state = model.evaluate(x, y, state)
        threads.observe(int(n), time.perf_counter() - started)
        total += float(loss_sum)
        count += int(n)
    return total, count


def evaluate_ids(model, ids, N=10, T=50):
    """Report for `model` on an id array (all of it, N streams, T steps per batch), with the
    seconds it took."""
    N = max(1, min(N, (len(ids) - 1)))
    started = time.perf_counter()
    out = report(*evaluate_batches(model, batches_of(ids, N, T), N))
    return {**out, "seconds": time.perf_counter() - started}


def evaluate_checkpoint(path, corpus=None, split="test", text=None, batch_size=10, seq_len=0,
                        encoding=None):
    """Evaluate checkpoint `path` on a corpus split or a text file; returns report() plus
    'source'. Raises ValueError subclasses with one-line messages for bad input."""
    from rnnkit.run import load_model

    model, codec, ck = load_model(path)
    T = seq_len or ck.config["data"]["seq_len"]
    if (corpus is None) == (text is None):
        raise ValueError("give either a corpus (with a split) or a text file")
    if corpus is not None:
        from rnnkit.corpus import Corpus

        with Corpus(corpus) as c:
            if c.vocab != codec.tokens or c.level != codec.level:
                raise ValueError(f"{corpus} has another vocabulary than the checkpoint "
                                 f"({c.level}, {c.vocab_size} tokens vs {codec.level}, "
                                 f"{len(codec)}); preprocess it with --vocab-from")
            ids = c.tokens(split)
        source = f"{corpus} [{split}]"
    else:
        if codec.level == "byte":
            with open(text, "rb") as f:
                data = f.read()
        else:
            with open(text, encoding=encoding or codec.encoding) as f:
                data = f.read()
        ids = codec.encode(data)
        source = str(text)
    if len(ids) < 2:
        raise ValueError(f"{source} has {len(ids)} token(s); at least 2 are needed")
    return {**evaluate_ids(model, ids, batch_size, T), "source": source}
