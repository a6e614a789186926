"""The language model: embedding -> L recurrent layers -> output projection -> softmax.

Parameters live in one flat array (`params`) and gradients in another (`grads`), with named
views into each (`p`, `g`): optimizers, gradient averaging across ranks and norm clipping each
touch one contiguous array. Shapes: ids (N, T); inside, everything is time-major (T, N, .).
"""
from dataclasses import dataclass

import numpy as np

from rnnkit import kernels as K
from rnnkit.cells import CELLS, GATES, backward, forward, layer_buffers, scratch_buffers, zeros

STEP_MAX_N = 8  # up to this many streams, sampling uses the per-unit step kernels


@dataclass
class ModelConfig:
    cell: str = "lstm"          # rnn-tanh | rnn-relu | lstm | gru
    vocab_size: int = 0         # V, from the corpus
    embed: int = 64             # E, embedding size
    hidden: int = 128           # H, state size of every layer
    layers: int = 2             # L
    dropout: float = 0.0        # on the embedding, between layers and before the output
    tie_weights: bool = False   # share embedding and output weights; needs embed == hidden

    def __post_init__(self):
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("vocab_size", "embed", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.tie_weights and self.embed != self.hidden:
            raise ValueError(f"tie_weights needs embed == hidden ({self.embed} != {self.hidden})")

    def shapes(self):
        """Name -> shape of every parameter, in storage order."""
        V, E, H, G = self.vocab_size, self.embed, self.hidden, GATES[self.cell]
        out = {"embed": (V, E)}
        for layer in range(self.layers):
            D = E if layer == 0 else H
            out[f"l{layer}.w_x"] = (D, G * H)
            out[f"l{layer}.w_h"] = (H, G * H)
            out[f"l{layer}.b"] = (G * H,)
            if self.cell == "gru":
                out[f"l{layer}.b_hn"] = (H,)
        if not self.tie_weights:
            out["out.w"] = (V, H)
        out["out.b"] = (V,)
        return out


class State:
    """The recurrent state carried between batches: h (L, N, H), and c (L, N, H) for LSTM."""

    def __init__(self, h, c=None):
        self.h, self.c = h, c

    def arrays(self):
        return {"h": self.h} if self.c is None else {"h": self.h, "c": self.c}

    @classmethod
    def from_arrays(cls, d):
        return cls(np.array(d["h"]), None if d.get("c") is None else np.array(d["c"]))

    def copy(self):
        return State.from_arrays(self.arrays())


def _views(flat, shapes):
    views, at = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        views[name] = flat[at:at + size].reshape(shape)
        at += size
    return views


class Model:
    def __init__(self, cfg, dtype=np.float32, seed=0):
        self.cfg, self.dtype = cfg, np.dtype(dtype)
        shapes = cfg.shapes()
        size = sum(int(np.prod(s)) for s in shapes.values())
        self.params = zeros(size, self.dtype)
        self.grads = zeros(size, self.dtype)
        self.p, self.g = _views(self.params, shapes), _views(self.grads, shapes)
        self._ws = {}
        self.lp = [self.layer(self.p, i) for i in range(cfg.layers)]
        self.lg = [self.layer(self.g, i) for i in range(cfg.layers)]
        self.init_weights(seed)

    def init_weights(self, seed):
        """PyTorch's RNN init, U(-1/sqrt(H), 1/sqrt(H)); U(-0.1, 0.1) for the embedding and
        output (word_language_model); LSTM forget-gate bias 1 (torch-rnn) to keep memory early."""
        rng = np.random.default_rng(seed)
        H = self.cfg.hidden
        for name, w in self.p.items():
            bound = 0.1 if name in ("embed", "out.w") else 1.0 / np.sqrt(H)
            w[...] = 0.0 if name == "out.b" else rng.uniform(-bound, bound, w.shape)
        if self.cfg.cell == "lstm":
            for layer in range(self.cfg.layers):
                self.p[f"l{layer}.b"][H:2 * H] = 1.0

    def num_params(self):
        return self.params.size

    def layer(self, d, layer):
        prefix = f"l{layer}."
        return {k[len(prefix):]: v for k, v in d.items() if k.startswith(prefix)}

    @property
    def out_w(self):
        return self.p["embed"] if self.cfg.tie_weights else self.p["out.w"]

    def init_state(self, N):
        shape = (self.cfg.layers, N, self.cfg.hidden)
        c = np.zeros(shape, self.dtype) if self.cfg.cell == "lstm" else None
        return State(np.zeros(shape, self.dtype), c)

    # -- buffers ---------------------------------------------------------------------------
    def workspace(self, N, T):
        """Buffers for an (N, T) batch, kept for the next batch of the same shape: large
        arrays allocated afresh each step cost page faults (what malloc tuning fixes in
        PyTorch)."""
        if (N, T) not in self._ws:
            if len(self._ws) >= 3:  # training, evaluation and sampling shapes
                self._ws.pop(next(iter(self._ws)))
            cfg, empty = self.cfg, (lambda s: zeros(s, self.dtype))
            H, E, L = cfg.hidden, cfg.embed, cfg.layers
            self._ws[N, T] = {
                "emb": empty((T, N, E)),
                "layers": [layer_buffers(cfg.cell, T, N, E if i == 0 else H, H, self.dtype)
                           for i in range(L)],
                "inputs": [None] * (L + 1),     # what each layer and the output projection read
                "masks": [None] * (L + 1),
                "logits": empty((T * N, cfg.vocab_size)),
                "scratch": scratch_buffers(cfg.cell, T, N, max(E, H), H, self.dtype),
                "dtop": [empty((T, N, H)), empty((T, N, H))],
                "demb": empty((T, N, E)),
                "dh": empty((N, H)), "dc": empty((N, H)),
            }
        return self._ws[N, T]

    def _dropout(self, ws, i, x, rng):
        """Inverted dropout on the input of stage i (layer i, or the output for i == L)."""
        p = self.cfg.dropout
        if rng is None or p == 0.0:
            ws["masks"][i] = None
            return x
        keep = rng.random(x.shape, dtype=self.dtype) >= p
        ws["masks"][i] = keep.astype(self.dtype) * self.dtype.type(1.0 / (1.0 - p))
        return x * ws["masks"][i]

    # -- forward / backward ----------------------------------------------------------------
    def _forward(self, x, state, rng):
        """Runs embedding, layers and output projection; returns (ws, ids, logits)."""
        N, T = x.shape
        ws = self.workspace(N, T)
        ids = np.ascontiguousarray(x.T, dtype=np.int64)
        K.embed_forward(self.p["embed"], ids, ws["emb"])
        inp = ws["emb"]
        for layer, buf in enumerate(ws["layers"]):
            inp = self._dropout(ws, layer, inp, rng)
            ws["inputs"][layer] = inp
            buf["hs"][0] = state.h[layer]
            if state.c is not None:
                buf["c"][...] = state.c[layer]
            forward(self.cfg.cell, inp, self.lp[layer], buf)
            inp = buf["hs"][1:]
        inp = self._dropout(ws, self.cfg.layers, inp, rng)
        ws["inputs"][-1] = inp
        K.linear_forward(inp.reshape(T * N, -1), self.out_w, self.p["out.b"], ws["logits"])
        return ws, ids

    def _final_state(self, ws):
        h = np.stack([buf["hs"][-1] for buf in ws["layers"]])
        c = np.stack([buf["c"] for buf in ws["layers"]]) if self.cfg.cell == "lstm" else None
        return State(h, c)

    def forward_backward(self, x, y, state, rng=None, dstate=None):
        """Mean loss (nats/token) and the carried state; model.grads gets d(loss)/d(params).

        dstate: optional State of gradients on the final state (zero in truncated BPTT).
        After the call, self.dstate holds the gradients on the initial state and self.dinputs
        those on the embedded inputs (T, N, E).
        """
        N, T = x.shape
        ws, ids = self._forward(x, state, rng)
        targets = np.ascontiguousarray(y.T, dtype=np.int64).reshape(-1)
        loss = K.softmax_xent(ws["logits"], targets, 1.0 / (N * T), grad=True)
        new_state = self._final_state(ws)

        self.grads[:] = 0.0
        cfg, L = self.cfg, self.cfg.layers
        dtop = ws["dtop"][L % 2]
        dout_w = self.g["embed"] if cfg.tie_weights else self.g["out.w"]
        K.linear_backward(ws["inputs"][L].reshape(T * N, -1), self.out_w, ws["logits"],
                          dtop.reshape(T * N, -1), dout_w, self.g["out.b"])
        dh_init, dc_init = [], []
        for layer in range(L - 1, -1, -1):
            if ws["masks"][layer + 1] is not None:
                dtop *= ws["masks"][layer + 1]
            dx = ws["dtop"][layer % 2] if layer > 0 else ws["demb"]
            dh, dc = ws["dh"], ws["dc"]
            dh[...] = 0.0 if dstate is None else dstate.h[layer]
            if cfg.cell == "lstm":
                dc[...] = 0.0 if dstate is None else dstate.c[layer]
            backward(cfg.cell, ws["inputs"][layer], self.lp[layer], self.lg[layer],
                     ws["layers"][layer], dtop, dh, dc, dx, ws["scratch"])
            dh_init.append(dh.copy())
            dc_init.append(dc.copy())
            dtop = dx
        if ws["masks"][0] is not None:
            dtop *= ws["masks"][0]
        K.embed_backward(ids, dtop, self.g["embed"])
        self.dinputs = dtop
        self.dstate = State(np.stack(dh_init[::-1]),
                            np.stack(dc_init[::-1]) if cfg.cell == "lstm" else None)
        return loss / (N * T), new_state

    def evaluate(self, x, y, state):
        """(summed loss in nats, token count, carried state), without dropout or gradients."""
        ws, _ = self._forward(x, state, None)
        targets = np.ascontiguousarray(y.T, dtype=np.int64).reshape(-1)
        return K.softmax_xent(ws["logits"], targets), targets.size, self._final_state(ws)

    def step(self, tokens, state):
        """Feed one token per stream; advances `state` in place; returns (N, V) logits."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        N = tokens.size
        if N > STEP_MAX_N:  # enough streams for the batched kernels' products to pay
            ws, _ = self._forward(tokens.reshape(-1, 1), state, None)
            final = self._final_state(ws)
            state.h[...] = final.h
            if state.c is not None:
                state.c[...] = final.c
            return ws["logits"].copy()
        ws = self._step_workspace(N)
        x = self.p["embed"][tokens]
        for layer in range(self.cfg.layers):
            p = self.lp[layer]
            c = state.c[layer] if state.c is not None else ws["h"]
            K.layer_step(self.cfg.cell, x, p["w_x"], p["w_h"], p["b"], p.get("b_hn", ws["none"]),
                         state.h[layer], c, ws["h"], ws["c"], ws["acc"])
            state.h[layer] = ws["h"]
            if state.c is not None:
                state.c[layer] = ws["c"]
            x = state.h[layer]
        logits = np.empty((N, self.cfg.vocab_size), self.dtype)
        K.logits_step(x, self.out_w, self.p["out.b"], logits)
        return logits

    def _step_workspace(self, N):
        key = ("step", N)
        if key not in self._ws:
            H, G = self.cfg.hidden, GATES[self.cfg.cell]
            self._ws[key] = {"h": np.zeros((N, H), self.dtype), "c": np.zeros((N, H), self.dtype),
                             "none": np.zeros(0, self.dtype),
                             "acc": K.step_scratch(N, H, G, self.dtype)}
        return self._ws[key]


__all__ = ["Model", "ModelConfig", "State"]
