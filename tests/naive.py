"""A slow, obvious numpy language model: the oracle every kernel is compared with.

Written to be read, not to be fast: one Python loop over time, the equations of docs/cells.md
as they are written there, float64. Forward only; gradients come from finite differences of
these functions, or from comparing with the kernels' own backward. Also torch.optim's updates
and gradient clipping, written out. Every backend is tested against these
(tests/test_backend.py).
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


def cross_entropy_rows(logits, targets):
    """-log softmax(logits)[target] of each row, with the max subtracted."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(targets)), targets]


def cross_entropy(logits, targets):
    """Summed -log softmax(logits)[target] over rows."""
    return cross_entropy_rows(logits, targets).sum()


def model_logits(cfg, p, x, h0, c0=None, emb=None):
    """Logits (T*N, V) of an (N, T) batch (an adaptive softmax's: log-probabilities), no
    dropout, and the final h (L, N, H) and c. emb (T, N, E) overrides the lookup."""
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
    top = inp.reshape(T * N, -1)
    if cfg.softmax == "adaptive":
        logits = adaptive_log_probs(top, p, cfg)
    else:
        w_out = p["embed"] if cfg.tie_weights else p["out.w"]
        logits = top @ w_out.T + p["out.b"]
    return logits, np.stack(hs_final), (np.stack(cs_final) if cs_final else None)


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def adaptive_log_probs(x, p, cfg):
    """Log-probabilities (M, V) of every id under an adaptive softmax (Grave et al.; PyTorch's
    AdaptiveLogSoftmaxWithLoss.log_prob): a head over the shortlist [0, c_0) and one logit per
    cluster; cluster i's words [c_i, c_{i+1}) get the head's log-probability of the cluster
    plus their own log-softmax after a projection to H // div_value^(i+1) units."""
    cutoffs = [int(c) for c in cfg.cutoffs.split(",")]
    bounds = cutoffs + [cfg.vocab_size]
    head = x @ p["out.head.w"].T + (p["out.head.b"] if cfg.head_bias else 0.0)
    head_lp = log_softmax(head)
    c0 = cutoffs[0]
    out = np.zeros((x.shape[0], cfg.vocab_size))
    out[:, :c0] = head_lp[:, :c0]
    for i in range(len(cutoffs)):
        tail = (x @ p[f"out.tail{i}.proj"].T) @ p[f"out.tail{i}.w"].T
        out[:, bounds[i]:bounds[i + 1]] = head_lp[:, c0 + i:c0 + i + 1] + log_softmax(tail)
    return out


def model_loss(cfg, p, x, y, h0, c0=None, emb=None):
    """Mean loss over the (N, T) batch, no dropout. emb (T, N, E) overrides the lookup.

    Returns (loss, final h (L, N, H), final c or None).
    """
    N, T = x.shape
    logits, h, c = model_logits(cfg, p, x, h0, c0, emb)
    loss = cross_entropy(logits, y.T.reshape(-1)) / (N * T)
    return loss, h, c


def optimizer_steps(name, p, grads, hyper):
    """torch.optim's for-loop update, written out in numpy (float64), one step per gradient;
    hyper: the optimizer's settings, PyTorch's defaults filled in (rnnkit.model.optim.DEFAULTS)."""
    h = hyper
    p = p.astype(np.float64).copy()
    lr, wd = h["lr"], h["weight_decay"]
    st = {}
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if name == "sgd":
            if wd:
                g = g + wd * p
            if h["momentum"]:
                if t == 1:
                    st["buf"] = g.copy()
                else:
                    st["buf"] = h["momentum"] * st["buf"] + (1 - h["dampening"]) * g
                g = g + h["momentum"] * st["buf"] if h["nesterov"] else st["buf"]
            p = p - lr * g
        elif name in ("adam", "adamw"):
            if name == "adamw":
                p = p * (1 - lr * wd)
            elif wd:
                g = g + wd * p
            b1, b2 = h["beta1"], h["beta2"]
            st["m"] = st.get("m", 0 * p) * b1 + (1 - b1) * g
            st["v"] = st.get("v", 0 * p) * b2 + (1 - b2) * g * g
            mhat = st["m"] / (1 - b1 ** t)
            denom = np.sqrt(st["v"]) / np.sqrt(1 - b2 ** t) + h["eps"]
            p = p - lr * mhat / denom
        elif name == "rmsprop":
            if wd:
                g = g + wd * p
            a = h["alpha"]
            st["s"] = a * st.get("s", 0 * p) + (1 - a) * g * g
            if h["centered"]:
                st["ga"] = a * st.get("ga", 0 * p) + (1 - a) * g
                avg = np.sqrt(st["s"] - st["ga"] ** 2) + h["eps"]
            else:
                avg = np.sqrt(st["s"]) + h["eps"]
            if h["momentum"] > 0:
                st["buf"] = h["momentum"] * st.get("buf", 0 * p) + g / avg
                p = p - lr * st["buf"]
            else:
                p = p - lr * g / avg
        elif name == "adagrad":
            if wd:
                g = g + wd * p
            clr = lr / (1 + (t - 1) * h["lr_decay"])
            st["sum"] = st.get("sum", 0 * p + h["initial_accumulator_value"]) + g * g
            p = p - clr * g / (np.sqrt(st["sum"]) + h["eps"])
    return p


def clip(g, max_norm=0.0, max_value=0.0):
    """torch's clip_grad_value_ then clip_grad_norm_ (rnnkit's order), on a copy; and the
    norm before clipping."""
    g = g.astype(np.float64).copy()
    norm = float(np.sqrt((g * g).sum()))
    if max_value > 0:
        g = np.clip(g, -max_value, max_value)
    if max_norm > 0:
        coef = max_norm / (np.sqrt((g * g).sum()) + 1e-6)
        if coef < 1:
            g = g * coef
    return g, norm
