"""The language model: embedding -> L recurrent layers -> output layer (full or adaptive
softmax: rnnkit/model/softmax.py).

Parameters live in one flat array (`params`) and gradients in another (`grads`), with named
views into each (`p`, `g`): optimizers, gradient averaging across ranks and norm clipping each
touch one contiguous array. Shapes: ids (N, T); inside, everything is time-major (T, N, .).

All array work happens in a backend (rnnkit/backends/): it allocates the arrays, on the host
or a GPU, and runs every kernel. This module only says what runs in which order, for any cell
(rnnkit/cells.py) and any backend.

    model = Model(ModelConfig(cell="lstm", vocab_size=65, hidden=256))
    loss, state = model.forward_backward(x, y, model.init_state(N))     # model.grads filled
    scores = model.step(tokens, state)       # sampling: T = 1; logits or log-probabilities
"""
import numpy as np

from rnnkit import cells
from rnnkit.model import softmax, sparse_rows, tables
from rnnkit.backends import get_backend
from rnnkit.model.config import ModelConfig


class WeightsMismatch(ValueError):
    """Named weights that do not fit a model: `name` is the first parameter missing from them
    or of another shape."""

    def __init__(self, name):
        super().__init__(f"parameter {name!r} is missing or has another shape")
        self.name = name


class State:
    """What a model carries between batches: per name of its cell's state ("h", and "c" for
    the LSTM), an (L, N, H) array on the model's backend."""

    def __init__(self, arrays, backend):
        self.arrays = dict(arrays)
        self.backend = backend

    @property
    def h(self):
        return self.arrays.get("h")

    @property
    def c(self):            # None but for the LSTM
        return self.arrays.get("c")

    def copy(self):
        return State({k: self.backend.clone(v) for k, v in self.arrays.items()}, self.backend)


def _tree(shapes, leaf, other):
    """leaf(shape, other's node) over a tree (dicts, lists) of shapes; None stays None."""
    if isinstance(shapes, dict):
        return {k: _tree(v, leaf, other[k] if isinstance(other, dict) else other)
                for k, v in shapes.items()}
    if isinstance(shapes, list):
        return [_tree(v, leaf, other[i] if isinstance(other, list) else other)
                for i, v in enumerate(shapes)]
    return None if shapes is None else leaf(shapes, other)


def _prefix(shape, array):
    """A view of the first prod(shape) numbers of `array` in `shape`."""
    return array.reshape(array.size)[:int(np.prod(shape))].reshape(shape)


def _views(flat, shapes):
    views, at = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        views[name] = flat[at:at + size].reshape(shape)
        at += size
    return views


# advance's steps at a time: enough that a prime's pieces run on the tiles (kernels/cpu/lstm.py
# TILE_FROM), few enough that their buffers are small
ADVANCE = 512


class Model:
    def __init__(self, cfg, dtype=None, seed=0, backend=None):
        self.cfg = cfg
        self.dtype = np.dtype(dtype if dtype is not None else cfg.dtype)
        self.cell = cells.get(cfg.cell)
        self.backend = backend or get_backend("cpu")
        shapes = cfg.shapes()
        size = sum(int(np.prod(s)) for s in shapes.values())
        self.params = self.backend.zeros((size,), self.dtype)
        self.grads = self.backend.zeros((size,), self.dtype)
        self.p, self.g = _views(self.params, shapes), _views(self.grads, shapes)
        self._ws = {}                   # (N, T) -> the workspace of that batch shape
        self._bases = {}                # (N, tabled) -> (T, the arrays its workspaces view)
        self.lp = [self.layer(self.p, i) for i in range(cfg.layers)]
        self.lg = [self.layer(self.g, i) for i in range(cfg.layers)]
        self.output = softmax.make(self)
        self.init_weights(seed)
        # True: the caller promises that between calls of forward_backward nothing writes
        # grads but clip_gradients and an optimizer given grad_ranges, and an allreduce over
        # share_ranges' (the trainer); each step then zeroes, and they clip, update and
        # average, only the runs of grads that a step can make non-zero
        # (model/sparse_rows.py); grad_ranges names those runs.
        self.sparse_embedding = False
        self._grad_ranges = None
        self._range_ids = None          # the ids grad_ranges is still to be computed from
        # True: the first layer reads its inputs from a table where rnnkit/model/tables.py
        # says it pays (then no dinputs); a test may turn it off before the first step
        self.input_tables = True

    def init_weights(self, seed):
        """PyTorch's RNN init, U(-1/sqrt(H), 1/sqrt(H)); U(-0.1, 0.1) for the embedding and
        full softmax (word_language_model); an adaptive softmax's as PyTorch's Linear layers,
        U(-1/sqrt(fan_in), 1/sqrt(fan_in)); then the cell's own bias blocks (the LSTM's
        forget gate: rnnkit/cells.py). Drawn on the host, the same numbers on every
        backend."""
        rng = np.random.default_rng(seed)
        H = self.cfg.hidden
        host = np.zeros(self.params.shape, self.dtype)
        views = _views(host, self.cfg.shapes())
        for name, w in views.items():
            bound = 0.1 if name in ("embed", "out.w") else 1.0 / np.sqrt(
                w.shape[1] if name.startswith("out.tail") else H)
            w[...] = 0.0 if name == "out.b" else rng.uniform(-bound, bound, w.shape)
        for layer in range(self.cfg.layers):
            self.cell.init_bias(views[f"l{layer}.b"], H)
        self.backend.copy(self.params, host)

    def load_weights(self, weights):
        """Copy named host weights (a checkpoint's) into the parameters, converted to the
        model's dtype; WeightsMismatch, with nothing copied, unless every parameter is there
        with its shape."""
        for name, w in self.p.items():
            if name not in weights or tuple(weights[name].shape) != tuple(w.shape):
                raise WeightsMismatch(name)
        for name, w in self.p.items():
            self.backend.copy(w, np.asarray(weights[name], self.dtype))

    def num_params(self):
        return int(self.params.size)

    def layer(self, d, layer):
        prefix = f"l{layer}."
        return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}

    def init_state(self, N, zero=True):
        """Zeros (zero=False: contents unset, for a state every entry of which is written
        next), one (L, N, H) array per name of the cell's state, in one allocation."""
        shape = (len(self.cell.state), self.cfg.layers, N, self.cfg.hidden)
        b = self.backend
        arrays = (b.zeros if zero else b.empty)(shape, self.dtype)
        return State({name: arrays[i] for i, name in enumerate(self.cell.state)}, b)

    def state_from_host(self, arrays):
        """A State on this model's backend from host arrays (a checkpoint's)."""
        return State({name: self.backend.from_host(np.asarray(arrays[name], self.dtype))
                      for name in self.cell.state}, self.backend)

    def state_to_host(self, state):
        return {name: self.backend.to_host(a) for name, a in state.arrays.items()}

    # -- buffers ---------------------------------------------------------------------------
    def workspace(self, N, T):
        """Buffers for an (N, T) batch, kept for later batches: large arrays allocated afresh
        each step cost page faults (what malloc tuning fixes in PyTorch). A batch of fewer
        steps than an earlier one of N streams (an evaluation's last batch, rnnkit score's
        shorter lines) takes views of the first len(view) numbers of that one's arrays, which
        are scratch: each call writes them before it reads them."""
        if (N, T) not in self._ws:
            key = self._base_key(N, T)
            base = self._bases.get(key)
            if base is None or base[0] < T:
                sizes = [k[0] for k in self._bases]
                if N not in sizes and len(set(sizes)) >= 3:    # training, evaluation, sampling
                    for k in [k for k in self._bases if k[0] == sizes[0]]:
                        self._drop(k)
                self._drop(key)
                base = self._bases[key] = (T, _tree(self._shapes(N, T), self.backend.zeros,
                                                    self.dtype))
            self._ws[N, T] = _tree(self._shapes(N, T), _prefix, base[1]) | {
                "inputs": [None] * (self.cfg.layers + 1),   # what each stage reads
                "use_mask": [False] * (self.cfg.layers + 1)}
        return self._ws[N, T]

    def _drop(self, key):
        self._bases.pop(key, None)
        for k in [k for k in self._ws if self._base_key(*k) == key]:
            del self._ws[k]

    def _base_key(self, N, T):
        """The arrays an (N, T) workspace views: one set per N and first layer's input."""
        return N, self.input_tables and tables.wanted(self.cfg, self.cell, self.backend, N, T)

    def _shapes(self, N, T):
        """The workspace's arrays as a tree of shapes (None: no array)."""
        cfg = self.cfg
        H, E, L = cfg.hidden, cfg.embed, cfg.layers
        table = tables.shapes(cfg, self.cell, self.backend, N, T) if self.input_tables else None
        inputs = [(0 if table else E) if i == 0 else H for i in range(L)]
        scratch = {}                    # one flat array per name, as large as any layer needs
        for D in inputs:
            for name, shape in self.backend.scratch(self.cell, T, N, D, H).items():
                scratch[name] = max(scratch.get(name, 0), int(np.prod(shape)))
        return {
            "emb": (T, N, inputs[0]),
            "tt": table, "gt": table,         # the first layer's table (model/tables.py)
            "layers": [self.backend.buffers(self.cell, T, N, D, H) for D in inputs],
            # dropout's masks and masked inputs, per stage (none without dropout)
            "dropped": [(T, N, D) if cfg.dropout else None for D in inputs + [H]],
            "masks": [(T, N, D) if cfg.dropout else None for D in inputs + [H]],
            "scratch": {k: (n,) for k, n in scratch.items()},
            "dtop": [(T, N, H), (T, N, H)],
            "demb": (T, N, inputs[0]),
            "dh": (N, H), "dc": (N, H),
        }

    def _scratch(self, ws, T, N, D):
        """This layer's views of the shared backward scratch."""
        shapes = self.backend.scratch(self.cell, T, N, D, self.cfg.hidden)
        return {k: ws["scratch"][k][:int(np.prod(s))].reshape(s) for k, s in shapes.items()}

    def _dropout(self, ws, i, x, rng):
        """Inverted dropout on the input of stage i (layer i, or the output for i == L)."""
        p = self.cfg.dropout
        ws["use_mask"][i] = rng is not None and p > 0.0
        if not ws["use_mask"][i]:
            return x
        self.backend.dropout(x, p, rng, ws["masks"][i], ws["dropped"][i])
        return ws["dropped"][i]

    # -- forward / backward ----------------------------------------------------------------
    def _forward(self, x, state, rng, train, checked=False):
        """Embedding and layers; ws["inputs"][-1] is what the output layer reads. checked:
        the ids are known to be in range (sampled), else they are checked."""
        b = self.backend
        N, T = x.shape
        ws = self.workspace(N, T)
        if not checked:
            tables.check_ids(x, self.cfg.vocab_size)
        table = tables.forward(self, ws, x)         # None: the embedding's rows, then
        ids = None if table else b.ids(x, plan=train)
        if ids is not None:
            b.embed_forward(self.p["embed"], ids, ws["emb"])
        inp = ws["emb"]
        for layer, buf in enumerate(ws["layers"]):
            inp = self._dropout(ws, layer, inp, rng)
            ws["inputs"][layer] = inp
            b.copy(buf["hs"][0], state.h[layer])
            if "c" in buf:
                b.copy(buf["c"], state.c[layer])
            first = None if layer else table
            b.cell_forward(self.cell, inp, tables.layer(self.lp[layer], first), buf, train,
                           first)
            inp = buf["hs"][1:]
        inp = self._dropout(ws, self.cfg.layers, inp, rng)
        ws["inputs"][-1] = inp
        return ws, ids

    @staticmethod
    def _top(ws):
        """The output layer's input, (T N, H) rows, t-major."""
        top = ws["inputs"][-1]
        return top.reshape(top.shape[0] * top.shape[1], top.shape[2])

    def _final_state(self, ws, N):
        out = self.init_state(N, zero=False)
        for layer, buf in enumerate(ws["layers"]):
            self.backend.copy(out.h[layer], buf["hs"][-1])
            if "c" in buf:
                self.backend.copy(out.c[layer], buf["c"])
        return out

    def forward_backward(self, x, y, state, rng=None, dstate=None):
        """Mean loss (nats/token) and the carried state; model.grads gets d(loss)/d(params).

        x, y: (N, T) host ids. rng: the backend's dropout RNG (None: no dropout). dstate:
        optional State of gradients on the final state (zero in truncated BPTT). After the
        call, self.dstate holds the gradients on the initial state and self.dinputs those on
        the embedded inputs (T, N, E), or None where the first layer read a table
        (rnnkit/model/tables.py).
        """
        b, cfg = self.backend, self.cfg
        N, T = x.shape
        L = cfg.layers
        ws, ids = self._forward(x, state, rng, train=True)
        b.fill(self.grads, 0.0, self.grad_ranges)
        self._grad_ranges = self._range_ids = None
        dtop = ws["dtop"][L % 2]
        loss = self.output.train(self._top(ws), y, 1.0 / (N * T), dtop.reshape(T * N, -1))
        new_state = self._final_state(ws, N)
        # the gradients on the final state (zero in truncated BPTT), turned in place by each
        # layer's BPTT into those on its initial state
        dstate_out = self.init_state(N) if dstate is None else dstate.copy()
        for layer in range(L - 1, -1, -1):
            if ws["use_mask"][layer + 1]:
                b.mul(dtop, ws["masks"][layer + 1])
            dx = ws["dtop"][layer % 2] if layer > 0 else ws["demb"]
            dh, dc = dstate_out.h[layer], dstate_out.c
            x_in = ws["inputs"][layer]
            table = tables.gradient(ws) if layer == 0 and ids is None else None
            b.cell_backward(self.cell, x_in, tables.layer(self.lp[layer], table),
                            tables.layer(self.lg[layer], table), ws["layers"][layer], dtop, dh,
                            None if dc is None else dc[layer], dx,
                            self._scratch(ws, T, N, x_in.shape[2]), table)
            dtop = dx
        if ids is None:
            tables.backward(self, ws)
            dtop = None
        else:
            if ws["use_mask"][0]:
                b.mul(dtop, ws["masks"][0])
            b.embed_backward(ids, dtop, self.g["embed"])
        # computed when asked: a data-parallel trainer asks for all ranks' rows instead
        self._range_ids = np.array(x) if self.skips_rows() else None
        self.dinputs = dtop
        self.dstate = dstate_out
        return loss / (N * T), new_state

    def skips_rows(self):
        """Whether steps may leave embedding rows out (sparse_embedding, a backend that takes
        ranges, an untied table large enough to be worth it)."""
        cfg, b = self.cfg, self.backend
        return bool(self.sparse_embedding and b.range_align and not cfg.tie_weights and
                    sparse_rows.worth_it(cfg.vocab_size, cfg.embed, self.grads.size))

    @property
    def grad_ranges(self):
        """The runs of grads that may be non-zero after the last step (the next one zeroes
        them), or None for all of grads."""
        if self._range_ids is not None:
            self._grad_ranges, self._range_ids = self._ranges(self._range_ids), None
        return self._grad_ranges

    def _ranges(self, ids):
        if not self.skips_rows():
            return None
        return sparse_rows.embedding_ranges(ids, self.cfg.vocab_size, self.cfg.embed,
                                            self.grads.size, self.backend.range_align)

    def share_ranges(self, ids):
        """Data parallelism, after forward_backward: grad_ranges widened to the rows that
        `ids`, every rank's input ids (a list, the same on every rank), name, which an
        allreduce of the ranks' grads fills; the same on every rank. Returns them."""
        self._grad_ranges = self._ranges(np.concatenate([np.ravel(i) for i in ids]))
        self._range_ids = None
        return self._grad_ranges

    def evaluate(self, x, y, state):
        """(summed loss in nats, token count, carried state), without dropout or gradients."""
        N, T = x.shape
        ws, _ = self._forward(x, state, None, train=False)
        return self.output.loss(self._top(ws), y), N * T, self._final_state(ws, N)

    def evaluate_tokens(self, x, y, state):
        """(each token's loss in nats, a host float64 (N, T) array; carried state): evaluate()
        token by token, for rnnkit score."""
        N, T = x.shape
        ws, _ = self._forward(x, state, None, train=False)
        rows = self.output.losses(self._top(ws), y)     # (T * N,), t-major
        return rows.reshape(T, N).T, self._final_state(ws, N)

    def advance(self, x, state):
        """The carried state after (N, T) host ids, without logits or loss (a prime), read
        ADVANCE steps at a time: the memory a prime takes does not grow with its length (a
        1 MB prime took 3.5 GB at once)."""
        for t in range(0, x.shape[1], ADVANCE):
            ws, _ = self._forward(x[:, t:t + ADVANCE], state, None, train=False)
            state = self._final_state(ws, x.shape[0])
        return state

    def step(self, tokens, state):
        """Feed one token per stream (forward with T = 1); advances `state` in place; returns
        (N, V) scores on the backend whose softmax is the next token's distribution (a buffer
        that the next call overwrites): the full softmax's logits, or the adaptive softmax's
        log-probabilities. The ids are not checked (a sampler's, in range)."""
        b = self.backend
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1, 1)
        ws, _ = self._forward(tokens, state, None, train=False, checked=True)
        for layer, buf in enumerate(ws["layers"]):
            b.copy(state.h[layer], buf["hs"][-1])
            if "c" in buf:
                b.copy(state.c[layer], buf["c"])
        return self.output.scores(self._top(ws))


__all__ = ["Model", "ModelConfig", "State", "WeightsMismatch"]
