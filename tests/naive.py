"""A slow, obvious numpy language model: the oracle every kernel is compared with.

Written to be read, not to be fast: one Python loop over time, the equations of docs/cells.md
as they are written there, float64. Forward only; gradients come from finite differences of
these functions, or from comparing with the kernels' own backward.
"""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rnn_layer(x, w_x, w_h, b, h0, relu=False):
    """x (T, N, D) -> hs (T, N, H), final h."""
    h, hs = h0, []
    for t in range(x.shape[0]):
        pre = x[t] @ w_x + h @ w_h + b
        h = np.maximum(pre, 0.0) if relu else np.tanh(pre)
        hs.append(h)
    return np.stack(hs), h


def lstm_layer(x, w_x, w_h, b, h0, c0):
    """Gate order i, f, g, o."""
    H = h0.shape[1]
    h, c, hs = h0, c0, []
    for t in range(x.shape[0]):
        a = x[t] @ w_x + h @ w_h + b
        i = sigmoid(a[:, :H])
        f = sigmoid(a[:, H:2 * H])
        g = np.tanh(a[:, 2 * H:3 * H])
        o = sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        hs.append(h)
    return np.stack(hs), h, c


def gru_layer(x, w_x, w_h, b, b_hn, h0):
    """PyTorch's GRU, gate order r, z, n; the reset gate multiplies (h W_hn + b_hn)."""
    H = h0.shape[1]
    h, hs = h0, []
    for t in range(x.shape[0]):
        xp = x[t] @ w_x + b
        hp = h @ w_h
        r = sigmoid(xp[:, :H] + hp[:, :H])
        z = sigmoid(xp[:, H:2 * H] + hp[:, H:2 * H])
        n = np.tanh(xp[:, 2 * H:] + r * (hp[:, 2 * H:] + b_hn))
        h = (1.0 - z) * n + z * h
        hs.append(h)
    return np.stack(hs), h


def cross_entropy(logits, targets):
    """Summed -log softmax(logits)[target] over rows, with the max subtracted."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(targets)), targets].sum()


def model_loss(cfg, p, x, y, h0, c0=None, emb=None):
    """Mean loss over the (N, T) batch, no dropout. emb (T, N, E) overrides the lookup.

    Returns (loss, final h (L, N, H), final c or None).
    """
    N, T = x.shape
    inp = p["embed"][x.T] if emb is None else emb
    hs_final, cs_final = [], []
    for layer in range(cfg.layers):
        w_x, w_h, b = p[f"l{layer}.w_x"], p[f"l{layer}.w_h"], p[f"l{layer}.b"]
        if cfg.cell == "lstm":
            inp, h, c = lstm_layer(inp, w_x, w_h, b, h0[layer], c0[layer])
            cs_final.append(c)
        elif cfg.cell == "gru":
            inp, h = gru_layer(inp, w_x, w_h, b, p[f"l{layer}.b_hn"], h0[layer])
        else:
            inp, h = rnn_layer(inp, w_x, w_h, b, h0[layer], relu=cfg.cell == "rnn-relu")
        hs_final.append(h)
    w_out = p["embed"] if cfg.tie_weights else p["out.w"]
    logits = inp.reshape(T * N, -1) @ w_out.T + p["out.b"]
    loss = cross_entropy(logits, y.T.reshape(-1)) / (N * T)
    return loss, np.stack(hs_final), (np.stack(cs_final) if cs_final else None)
