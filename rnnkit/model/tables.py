"""The first layer's input table. Where the embedding feeds the first layer as it is (no
dropout between them) and a batch has few distinct ids against its tokens (a character
model's 65 symbols in 2,048 tokens), the first layer's input gates b + W_x.T e are computed
once per distinct id e of the batch (U x E x G*H) and read by id; BPTT sums their gradients by
id, and dW_x and the embedding's rows come from those sums (U x G*H x E twice). Three
(T N x E x G*H) products go: the same sums in another order, so the gradients match the
embedded inputs' to rounding, not bit for bit (bench/RESULTS.md). The backend's kernels take
the table (Backend.table_inputs); the model asks here which batches use it.
"""
import numpy as np


def wanted(cfg, cell, backend, N, T):
    """Whether (N, T) batches of this model use a table: no dropout on the embedding, a
    vocabulary of at most half the batch's tokens, a backend whose kernels take one."""
    return bool(cfg.dropout == 0 and 2 * cfg.vocab_size <= N * T and
                backend.table_inputs(cell))


def shapes(cfg, cell, backend, N, T):
    """The shape of the workspace's arrays for a table and its gradient (None: no table):
    room for a row per id."""
    if not wanted(cfg, cell, backend, N, T):
        return None
    return (cell.gates * cfg.hidden * cfg.vocab_size,)


def numbers(cfg, cell, backend, N, T):
    """Numbers a step with a table holds beyond the workspace's arrays for layer 0 at D = E
    (memory.py): the table and its gradient, the kernels' transposed copies of both, and the
    host products' temporaries (embed[rows], dW_x, the rows' gradient)."""
    shape = shapes(cfg, cell, backend, N, T)
    if shape is None:
        return 0
    E, V = cfg.embed, cfg.vocab_size
    return 4 * shape[0] + 3 * V * E + E * cell.gates * cfg.hidden


def check_ids(x, V):
    """ValueError unless every id of the (N, T) host batch is in [0, V): a kernel reads an
    embedding or table row by id without looking."""
    x = np.asarray(x)
    if x.size and (x.min() < 0 or x.max() >= V):
        raise ValueError(f"token ids must lie in [0, {V}); this batch has {x.min()}..{x.max()}")


def layer(d, table):
    """A layer's parameters (or gradients) as the kernels take them: with a table, W_x of
    no rows (the first layer's inputs have no columns)."""
    return d if table is None else dict(d, w_x=d["w_x"][:0])


def forward(model, ws, x):
    """The batch's table (tt, tid) for cell_forward, from its (N, T) host ids, or None where
    ws has none; keeps what backward needs in ws."""
    if ws["tt"] is None:
        return None
    b = model.backend
    N, T = np.shape(x)
    rows, tid = np.unique(np.asarray(x).T, return_inverse=True)
    U, GH = rows.size, model.cell.gates * model.cfg.hidden
    rows = b.indices(rows)
    tid = b.indices(tid.reshape(-1)).reshape(T, N)
    tt = ws["tt"][:GH * U].reshape(U, GH)
    b.input_table(model.p["embed"], rows, model.lp[0]["w_x"], model.lp[0]["b"], tt)
    ws["table"] = (rows, tid, ws["gt"][:GH * U].reshape(U, GH))
    return tt, tid


def gradient(ws):
    """(tid, gt) for the first layer's cell_backward."""
    return ws["table"][1:]


def backward(model, ws):
    """After the first layer's cell_backward: dW_x and the embedding rows' gradients from
    the table's (gt)."""
    rows, _, gt = ws["table"]
    model.backend.input_table_backward(model.p["embed"], rows, model.lp[0]["w_x"], gt,
                                       model.lg[0]["w_x"], model.g["embed"])
