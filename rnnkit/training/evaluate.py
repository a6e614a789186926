"""The evaluation loop: loss of a model on ids, in nats per token, perplexity, bits per token.
(`rnnkit eval` on a checkpoint is rnnkit/tools/eval_checkpoint.py.)

The ids are laid out as N parallel streams (the training layout) and fed T steps at a time with
the hidden state carried across batches, so every token after a stream's first is predicted
from all that came before it in its stream. The last, shorter batch is evaluated too; only the
< N tokens that do not fill the streams evenly are left out.
"""
import math
import time

import numpy as np

from rnnkit.corpus.reader import stream_length
from rnnkit.metrics import bits, perplexity
from rnnkit.training.runtime import Runtime



def report(loss_sum, count):
    """The numbers we report for a summed loss over `count` predicted tokens."""
    loss = loss_sum / count if count else math.nan
    return {"loss": loss, "perplexity": perplexity(loss), "bits_per_token": bits(loss),
            "tokens": int(count)}


def batches_of(ids, N, T):
    """(x, y) batches of an in-memory id array laid out as N streams (the last may be short)."""
    ids = np.asarray(ids)
    S = stream_length(len(ids), N)
    if S < 1:
        raise ValueError(f"{len(ids)} tokens are too few for {N} streams (need {N + 1})")
    xs = ids[:N * S].reshape(N, S)            # stream i is ids[i*S : (i+1)*S]
    ys = ids[1:N * S + 1].reshape(N, S)
    for t in range(0, S, T):
        yield (np.ascontiguousarray(xs[:, t:t + T], np.int32),
               np.ascontiguousarray(ys[:, t:t + T], np.int32))


def evaluate_batches(model, batches, N, limit=0, progress=None, stop=None):
    """(summed loss in nats, tokens) of `model` on an iterable of (x, y) batches with N rows,
    the state carried from batch to batch and starting at zero; at most `limit` batches (0:
    all), and none after `stop()` says so. `progress(tokens)` is called after each batch."""
    state = model.init_state(N)
    total, count = 0.0, 0
    runtime = Runtime(model.backend)
    runtime.begin()
    for i, (x, y) in enumerate(batches):
        if limit and i >= limit or stop is not None and stop():
            break
        started = time.perf_counter()
        loss_sum, n, state = model.evaluate(x, y, state)
        runtime.observe(int(n), time.perf_counter() - started)
        total += float(loss_sum)
        count += int(n)
        if progress is not None:
            progress(int(n))
    return total, count


def evaluate_ids(model, ids, N=10, T=50, progress=None):
    """Report for `model` on an id array (all of it, N streams, T steps per batch), with the
    seconds it took. `progress`: see evaluate_batches."""
    N = max(1, min(N, (len(ids) - 1)))
    started = time.perf_counter()
    out = report(*evaluate_batches(model, batches_of(ids, N, T), N, progress=progress))
    return {**out, "seconds": time.perf_counter() - started}


def scored_tokens(length, N):
    """Tokens that evaluate_ids predicts in an id array of `length`."""
    N = max(1, min(N, length - 1))
    return stream_length(length, N) * N


def validation_batches(corpus, split, cfg, comm):
    """A training run's validation batches on this rank and how many to evaluate: the one
    process's N streams (fewer for a small split), shared by the ranks as evenly as they go,
    so that an MPI job's loss is the one process's."""
    N, T = cfg.data.batch_size, cfg.data.seq_len
    L = corpus.len_split(split)
    N = max(1, min(N, (L - 1) // T))
    T = min(T, (L - 1) // N)
    batches = corpus.batches(split, N, T, rank=comm.rank, world=comm.size, even=False,
                             tail=True)
    limit = cfg.train.eval_batches
    return batches, (min(len(batches), limit) if limit else len(batches))


def validation_loss(model, batches, count, comm, stop=None):
    """The mean loss per token over every rank's streams (`count` batches each; fewer once
    `stop()` says so)."""
    total, tokens = evaluate_batches(model, batches, len(batches.rows), count, stop=stop) \
        if batches.rows else (0.0, 0)       # more ranks than streams: none here
    shares = comm.gather((total, tokens))
    tokens = sum(n for _, n in shares)
    return sum(t for t, _ in shares) / tokens if tokens else math.nan
