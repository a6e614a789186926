"""The output layer: a full softmax over the vocabulary, or Grave et al.'s adaptive softmax.

Full: logits = x @ W.T + b, (M, V); W is (V, H), or the embedding when tied.

Adaptive (Grave et al. 2017, "Efficient softmax approximation for GPUs"), the formulation of
PyTorch's torch.nn.AdaptiveLogSoftmaxWithLoss. The cutoffs c_0 < ... < c_{k-1} < V cut the
ids into a shortlist [0, c_0) and k tail clusters [c_i, c_{i+1}) (c_k = V); the head is a
softmax over the shortlist and one logit per cluster, and tail i projects H to
h_i = H // div_value^(i+1) before its own softmax over its words:

    head   = x @ head.w.T (+ head.b)                  (M, c_0 + k)
    tail_i = (x @ tail_i.proj.T) @ tail_i.w.T         (M, c_{i+1} - c_i), no biases
    log p(v) = log_softmax(head)[v]                                         v < c_0
    log p(v) = log_softmax(head)[c_0 + i] + log_softmax(tail_i)[v - c_i]    c_i <= v < c_{i+1}

The clusters make sense when the ids go by frequency: a word-level vocabulary numbers <unk>
and <eos>, then the words by count (rnnkit/corpus/tokenize.py), so the shortlist holds the c_0 - 2
most frequent words. Training and evaluation compute each row's head and only its target's
cluster (the rows of a cluster are gathered, projected, and their gradient scattered back):
that is where the speed comes from. log_probs gives the whole normalised distribution
(generate and beam search sample from it). Rows are t-major (row t N + n), as the model's
top layer lays them out.
"""
import dataclasses
import math

import numpy as np

KINDS = ("full", "adaptive")


# -- the settings ----------------------------------------------------------------------------
def parse_cutoffs(value):
    """'2000,10000', [2000, 10000] or 2000 (one) -> (2000, 10000); () for '' or []. ValueError
    unless positive integers in increasing order."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")] if value.strip() else []
        if not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"cutoffs {value!r}: expected integers separated by commas, "
                             f"e.g. 2000,10000")
        value = [int(p) for p in parts]
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"cutoffs: expected integers such as \"2000,10000\", got {value!r}")
    if any(v < 1 for v in value) or any(b <= a for a, b in zip(value, value[1:])):
        raise ValueError(f"cutoffs {','.join(map(str, value))}: must be positive and "
                         f"increasing")
    return tuple(value)


def join_cutoffs(value):
    """The config's text for cutoffs given as text or a list: '2000,10000'."""
    return ",".join(map(str, parse_cutoffs(value)))


@dataclasses.dataclass(frozen=True)
class Clusters:
    """An adaptive softmax's shape: cutoffs (c_0 .. c_{k-1}), V, H, div_value, head_bias."""
    cutoffs: tuple
    V: int
    H: int
    div_value: float
    head_bias: bool

    @classmethod
    def of(cls, cfg):
        """From a ModelConfig; None for a full softmax."""
        if cfg.softmax != "adaptive":
            return None
        return cls(parse_cutoffs(cfg.cutoffs), cfg.vocab_size, cfg.hidden,
                   float(cfg.div_value), bool(cfg.head_bias))

    @property
    def k(self):
        return len(self.cutoffs)

    @property
    def head(self):
        """Columns of the head: the shortlist, then one per cluster."""
        return self.cutoffs[0] + self.k

    @property
    def bounds(self):
        """c_0, ..., c_{k-1}, V: cluster i holds the ids [bounds[i], bounds[i + 1])."""
        return self.cutoffs + (self.V,)

    def hidden(self, i):
        """h_i, as PyTorch computes it (int(in_features // div_value ** (i + 1)))."""
        return int(self.H // (self.div_value ** (i + 1)))

    def size(self, i):
        return self.bounds[i + 1] - self.bounds[i]

    def shapes(self):
        out = {"out.head.w": (self.head, self.H)}
        if self.head_bias:
            out["out.head.b"] = (self.head,)
        for i in range(self.k):
            out[f"out.tail{i}.proj"] = (self.hidden(i), self.H)
            out[f"out.tail{i}.w"] = (self.size(i), self.hidden(i))
        return out

    def cluster(self, ids):
        """Each id's place: 0 in the shortlist, i + 1 in tail cluster i."""
        return np.searchsorted(np.asarray(self.cutoffs), ids, side="right")


def check(cfg):
    """ValueError (one line, without the section) unless cfg's softmax settings fit."""
    if cfg.softmax not in KINDS:
        raise ValueError(f"softmax must be one of {', '.join(KINDS)}, not {cfg.softmax!r}")
    cutoffs = parse_cutoffs(cfg.cutoffs)
    if cfg.softmax != "adaptive":
        return
    if not cutoffs:
        raise ValueError("softmax = adaptive needs cutoffs, e.g. --cutoffs 2000,10000 (ids "
                         "below 2000 in the head, 2000-9999 in the first tail cluster, the "
                         "rest in the second)")
    if not cfg.div_value > 0:
        raise ValueError("div_value must be > 0")
    if cfg.tie_weights:
        raise ValueError("tie_weights needs softmax = full (an adaptive softmax has no V x H "
                         "output matrix to share)")
    c = Clusters(cutoffs, cfg.vocab_size, cfg.hidden, float(cfg.div_value), cfg.head_bias)
    if c.hidden(c.k - 1) < 1:
        raise ValueError(f"div_value {cfg.div_value:g}: tail cluster {c.k - 1} would project "
                         f"hidden {cfg.hidden} to {c.hidden(c.k - 1)} units; lower div_value "
                         f"or use fewer cutoffs")
    if cfg.vocab_size > 0 and cutoffs[-1] >= cfg.vocab_size:
        raise ValueError(f"cutoffs {cfg.cutoffs}: each must be below the vocabulary size "
                         f"{cfg.vocab_size} (every cluster needs a word)")


def describe(model):
    """How a run's first lines and `rnnkit info` name the output layer, from a [model] table
    (a dict): "" for a full softmax."""
    if model.get("softmax") != "adaptive":
        return ""
    bias = ", head bias" if model.get("head_bias") else ""
    return f"adaptive softmax (cutoffs {model['cutoffs']}, div {model['div_value']:g}{bias})"


def workspace_numbers(cfg, M):
    """Numbers of the output layer's buffers for M rows, at most (model/memory.py)."""
    c = Clusters.of(cfg)
    if c is None:
        return M * cfg.vocab_size
    widest = max(c.size(i) for i in range(c.k))
    hmax = max(c.hidden(i) for i in range(c.k))
    return M * (c.head + widest + 2 * cfg.hidden + 2 * hmax)


# -- the layers on a backend -------------------------------------------------------------------
class Scratch:
    """Flat backend arrays that grow to the largest request (by a quarter at least, so that a
    batch needing a little more reallocates rarely), handed out as views of their first
    numbers: every caller writes what it reads."""

    def __init__(self, backend, dtype):
        self.backend, self.dtype, self.arrays = backend, dtype, {}

    def get(self, name, shape):
        n = int(math.prod(shape))   # not np.prod: microseconds a token when sampling
        a = self.arrays.get(name)
        if a is None or a.size < n:
            grown = max(n, 1) if a is None else max(n, a.size + a.size // 4)
            a = self.arrays[name] = self.backend.zeros((grown,), self.dtype)
        return a[:n].reshape(shape)


def make(model):
    """The output layer of a Model."""
    return Adaptive(model) if model.cfg.softmax == "adaptive" else Full(model)


class Full:
    """A full softmax: one (M, V) product, softmax cross-entropy over all of V."""

    def __init__(self, model):
        cfg, p, g = model.cfg, model.p, model.g
        self.b, self.V = model.backend, cfg.vocab_size
        self.w, self.bias = (p["embed"] if cfg.tie_weights else p["out.w"]), p["out.b"]
        self.dw, self.db = (g["embed"] if cfg.tie_weights else g["out.w"]), g["out.b"]
        self.scratch = Scratch(model.backend, model.dtype)

    def scores(self, x):
        """(M, V) logits of x (M, H), in a buffer the next call overwrites."""
        logits = self.scratch.get("logits", (x.shape[0], self.V))
        self.b.linear_forward(x, self.w, self.bias, logits)
        return logits

    def train(self, x, y, scale, dx):
        """Summed loss of targets y ((N, T) host ids) given x (M, H); scale * its gradient
        added to the parameters' gradients, and on x written into dx (M, H)."""
        logits = self.scores(x)
        loss = self.b.softmax_xent(logits, self.b.ids(y).reshape(-1), scale, grad=True)
        self.b.linear_backward(x, self.w, logits, dx, self.dw, self.db)
        return loss

    def compile_backward(self, x, dx):
        """Run the backward's kernels on arrays of x's and dx's shapes and types (the compile
        workers' "linear" task, rnnkit/training/compile_workers.py): scratch in, gradients out."""
        logits = self.scratch.get("logits", (x.shape[0], self.V))
        self.b.linear_backward(x, self.w, logits, dx, self.dw, self.db)

    def loss(self, x, y):
        """Summed loss in nats, without gradients."""
        return self.b.softmax_xent(self.scores(x), self.b.ids(y).reshape(-1))

    def losses(self, x, y):
        """Each row's loss in nats, a host float64 array (M,)."""
        return self.b.softmax_xent_rows(self.scores(x), self.b.ids(y).reshape(-1))


@dataclasses.dataclass
class Batch:
    """Adaptive._forward's work: the flat logits and the head's view of them; the rows with a
    tail target, on the host and on the backend; the ragged plan and its row count; the
    gathered rows (R, H) or None; per cluster with rows, (i, first row, offset in the
    projections' buffer, its rows of x, their projections, their logits)."""
    logits: object
    head: object
    rows: np.ndarray
    rows_on: object
    plan: object
    count: int
    xg: object
    tails: list


class Adaptive:
    """An adaptive softmax (module docstring) on the model's backend.

    A batch's plan, made on the host from its targets: the rows whose target lies in a tail
    cluster, grouped by cluster (`rows`), and one (offset, width, target) triple per softmax
    row of the step in `logits`, a flat buffer holding the head's (M, c_0 + k) and then each
    cluster's (M_i, c_{i+1} - c_i): the backend's ragged cross-entropy takes them all in one
    call."""

    def __init__(self, model):
        cfg, p, g, b = model.cfg, model.p, model.g, model.backend
        self.c = c = cfg.clusters()
        self.b, self.H = b, cfg.hidden
        self.head_w, self.head_b = p["out.head.w"], p.get("out.head.b")
        self.dhead_w, self.dhead_b = g["out.head.w"], g.get("out.head.b")
        self.proj = [p[f"out.tail{i}.proj"] for i in range(c.k)]
        self.dproj = [g[f"out.tail{i}.proj"] for i in range(c.k)]
        self.w = [p[f"out.tail{i}.w"] for i in range(c.k)]
        self.dw = [g[f"out.tail{i}.w"] for i in range(c.k)]
        self.hmax = max(c.hidden(i) for i in range(c.k))
        self.bounds = b.from_host(np.array(c.bounds, np.int64))
        self.scratch = Scratch(b, model.dtype)

    def plan(self, y):
        """(rows, triples, counts) of (N, T) host targets, as host int64 arrays: rows (R,),
        triples (M + R, 3), counts (k,) rows per cluster."""
        c = self.c
        t = np.ascontiguousarray(np.asarray(y).T, np.int64).reshape(-1)
        M = t.size
        if M and (t.min() < 0 or t.max() >= c.V):
            raise ValueError(f"targets must lie in [0, {c.V})")
        where = c.cluster(t)
        head_t = np.where(where == 0, t, c.cutoffs[0] + where - 1)
        rows = np.argsort(where, kind="stable")[np.count_nonzero(where == 0):]
        counts = np.bincount(where, minlength=c.k + 1)[1:]
        triples = np.empty((M + rows.size, 3), np.int64)
        triples[:M, 0] = np.arange(M) * c.head
        triples[:M, 1] = c.head
        triples[:M, 2] = head_t
        at, r = M * c.head, M
        for i in range(c.k):
            n = int(counts[i])
            triples[r:r + n, 0] = at + np.arange(n) * c.size(i)
            triples[r:r + n, 1] = c.size(i)
            triples[r:r + n, 2] = t[rows[r - M:r - M + n]] - c.bounds[i]
            at, r = at + n * c.size(i), r + n
        return rows, triples, counts

    def _forward(self, x, y):
        """The head's and the target clusters' logits of x (M, H) for targets y, and what
        the loss and the backward need (a Batch)."""
        b, c, H = self.b, self.c, self.H
        M = x.shape[0]
        rows, triples, counts = self.plan(y)
        R = rows.size
        up = b.indices(np.concatenate([rows, triples.reshape(-1)]))
        logits = self.scratch.get("logits", (int(triples[-1, 0] + triples[-1, 1]),))
        head = logits[:M * c.head].reshape(M, c.head)
        b.linear_forward(x, self.head_w, self.head_b, head)
        batch = Batch(logits, head, rows, up[:R], up[R:], M + R, None, [])
        if not R:
            return batch
        batch.xg = self.scratch.get("x", (R, H))
        b.gather_rows(x, batch.rows_on, batch.xg)
        p = self.scratch.get("p", (R * self.hmax,))
        r, at, hat = 0, M * c.head, 0
        for i in range(c.k):
            n, h, V_i = int(counts[i]), c.hidden(i), c.size(i)
            if n:
                xi, pi = batch.xg[r:r + n], p[hat:hat + n * h].reshape(n, h)
                li = logits[at:at + n * V_i].reshape(n, V_i)
                b.linear_forward(xi, self.proj[i], None, pi)
                b.linear_forward(pi, self.w[i], None, li)
                batch.tails.append((i, r, hat, xi, pi, li))
            r, at, hat = r + n, at + n * V_i, hat + n * h
        return batch

    def train(self, x, y, scale, dx):
        """As Full.train."""
        b = self.b
        f = self._forward(x, y)
        loss = b.ragged_xent(f.logits, f.plan, f.count, scale, grad=True)
        b.linear_backward(x, self.head_w, f.head, dx, self.dhead_w, self.dhead_b)
        if f.xg is not None:
            dxg = self.scratch.get("dx", f.xg.shape)
            dp = self.scratch.get("dp", (f.xg.shape[0] * self.hmax,))
            for i, r, hat, xi, pi, li in f.tails:
                n, h = pi.shape
                dpi = dp[hat:hat + n * h].reshape(n, h)
                b.linear_backward(pi, self.w[i], li, dpi, self.dw[i], None)
                b.linear_backward(xi, self.proj[i], dpi, dxg[r:r + n], self.dproj[i], None)
            b.scatter_add_rows(dxg, f.rows_on, dx)
        return loss

    def compile_backward(self, x, dx):
        """As Full's: a training step's output layer on targets in every cluster."""
        M, V = x.shape[0], self.c.V
        self.train(x, (np.arange(M) * (V - 1) // max(1, M - 1)).reshape(-1, 1), 1.0, dx)

    def loss(self, x, y):
        f = self._forward(x, y)
        return self.b.ragged_xent(f.logits, f.plan, f.count)

    def losses(self, x, y):
        f = self._forward(x, y)
        each = self.b.ragged_xent_rows(f.logits, f.plan, f.count)
        M = x.shape[0]
        out = each[:M].copy()
        out[f.rows] += each[M:]         # a tail target's loss: the head's part + its cluster's
        return out

    def scores(self, x):
        """(M, V) log-probabilities of x (M, H) over the whole vocabulary (every cluster's
        softmax for every row), in a buffer the next call overwrites."""
        b, c = self.b, self.c
        M = x.shape[0]
        logits = self.scratch.get("logits", (M * (c.head + c.V - c.cutoffs[0]),))
        b.linear_forward(x, self.head_w, self.head_b, logits[:M * c.head].reshape(M, c.head))
        for i in range(c.k):
            at = M * (c.head + c.bounds[i] - c.cutoffs[0])
            pi = self.scratch.get("p", (M, c.hidden(i)))     # each cluster's in turn
            b.linear_forward(x, self.proj[i], None, pi)
            b.linear_forward(pi, self.w[i], None, logits[at:at + M * c.size(i)].reshape(
                M, c.size(i)))
        out = self.scratch.get("out", (M, c.V))
        b.adaptive_log_probs(logits, self.bounds, out)
        return out
