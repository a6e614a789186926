"""The backend interface: what every backend does (`Backend`, a typing.Protocol that both
backends are checked against in tests/test_architecture.py), how a backend registers a cell's
kernels (`CellKernels`), and what backends share. get_backend (rnnkit/backends/__init__.py)
makes one.
"""
import dataclasses
import hashlib
import json
from typing import Callable, Protocol, runtime_checkable

from rnnkit.errors import RnnkitError


class BackendError(RnnkitError):
    """A backend cannot be used here (one line: what is missing and how to get it)."""


@dataclasses.dataclass(frozen=True)
class CellKernels:
    """One cell's kernels on one backend, as its registry (`KERNELS` in cpu.py, cuda.py) holds
    them: forward(backend, cell, x, p, buf, table) and backward(backend, cell, x, p, g, buf,
    dhs, dh, dc, dx, scratch, table), the arguments of Backend.cell_forward and cell_backward;
    layout, its arrays (rnnkit/kernels/*/buffers.py); cached, the compiled functions
    ("module.name") whose presence in the kernel cache means that its first step compiles
    nothing."""
    forward: Callable
    backward: Callable
    layout: object
    cached: tuple


@runtime_checkable
class Backend(Protocol):
    """What every backend does. Arrays are the backend's own (numpy arrays, numba.cuda device
    arrays): they support `shape`, `dtype`, `size`, `ndim`, basic slicing (`a[i]`, `a[i:j]`)
    and `reshape` of contiguous arrays. Shapes: docs/cells.md."""

    name: str                       # "cpu", "cuda"
    # The multiple that the starts and stops of `ranges` (sgd_update) must be, or 0 where the
    # kernels take no ranges (and the model makes none).
    range_align: int
    on_host: bool                   # its arrays are the host's memory (a checkpoint needs no copy)

    # -- where it runs -----------------------------------------------------------------------
    def describe(self):
        """What the first line of a run says about where it runs; it starts with target()."""

    def target(self):
        """What the kernels run on and are compiled for, in a few words ("cpu (avx2:
        haswell)"): the start of describe(), and what metrics.jsonl's start event records."""

    def compiles_for(self):
        """What the note before a first compile says the kernels are compiled for: "this
        machine", or the CPU that NUMBA_CPU_NAME chose ("haswell (avx2)")."""

    def available_bytes(self):
        """Memory a model may still take here, in bytes (None where unknown)."""

    def compiled(self, cell, dtype=None):
        """Whether this cell's kernels (for arrays of `dtype`) load from the compile cache
        (else the first step waits for the compiler)."""

    def buffers(self, cell, T, N, D, H):
        """Name -> shape of one layer's buffers for this backend's kernels of `cell`: forward
        caches that backward reads, hs (T + 1, N, H) with hs[0] the initial state, and c (N, H)
        for a cell that carries one."""

    def scratch(self, cell, T, N, D, H):
        """Name -> shape of the backward's work space, shared by the layers."""

    # -- arrays ------------------------------------------------------------------------------
    def zeros(self, shape, dtype):
        """A new array of zeros."""

    def empty(self, shape, dtype):
        """A new array whose contents are not set: the caller writes every entry."""

    def from_host(self, host):
        """A new array with a host array's contents."""

    def to_host(self, a):
        """A host (numpy) copy."""

    def host_view(self, a):
        """a's contents as a host array, not copied where `a` is one already: valid until `a`
        next changes (a checkpoint written at once needs no second copy of the model)."""

    def clone(self, a):
        """A new array with a's contents."""

    def copy(self, dst, src):
        """dst[...] = src; src of dst's shape, on this backend or the host."""

    def fill(self, a, value, ranges=None):
        """a[...] = value; with `ranges` (runs of a 1-D a, see sgd_update), there at least."""

    def mul(self, a, b):
        """a *= b, in place."""

    def gather_streams(self, dst, src, rows):
        """dst[:, n] = src[:, rows[n]] for (L, N, H) states (beam search's reorder); rows a
        host int64 array (N,), each below src's N, which may differ from dst's; dst is not
        src."""

    def all_finite(self, a):
        """Whether no entry is NaN or inf, a host bool."""

    def ids(self, x, plan=False):
        """(N, T) host token ids -> (T, N) int64 ids on the backend. plan: they feed a
        training step's embedding gradient (the GPU prepares its plan as they go up)."""

    def indices(self, host):
        """A 1-D host int64 array on the backend, for the kernels of the step that made it
        (the GPU's goes up through a ring of pinned buffers that later uploads reuse)."""

    # -- layers ------------------------------------------------------------------------------
    def cell_forward(self, cell, x, p, buf, train=True, table=None):
        """Run one layer over x (T, N, D) with parameters p (cell.params); buf: its buffers
        (buffers()), hs[0] (and c) holding the initial state; hs[1:] (and c) get the outputs.
        Without train the caches need not be kept. table (tt, tid), where table_inputs(cell):
        x is (T, N, 0) and the input part of the gates at step t of stream n, b included, is
        row tid[t, n] of tt (U, G*H) (input_table's); tid (T, N) int64 on the backend."""

    def cell_backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch, table=None):
        """BPTT through one layer after cell_forward: dhs (T, N, H) the gradient on its
        outputs; gradients accumulate (+=) into g; dh (and dc) go from the final state's
        gradient to the initial state's; dx (T, N, D) is overwritten; scratch: scratch()'s.
        table (tid, gt) after a forward with a table: gt (U, G*H) is overwritten with the
        gradient on tt (input_table_backward takes it on)."""

    def table_inputs(self, cell):
        """Whether cell_forward and cell_backward take a table for this cell."""

    def input_table(self, embed, rows, w_x, b, out):
        """out (U, G*H) = embed[rows] @ W_x + b: the first layer's input gates of each of the
        U distinct ids in rows (from indices()), for cell_forward's table."""

    def input_table_backward(self, embed, rows, w_x, gt, dw_x, dembed):
        """After cell_backward with a table: dw_x += embed[rows].T @ gt and
        dembed[rows] += gt @ W_x.T (rows distinct)."""

    def embed_forward(self, table, ids, out):
        """out (T, N, E) = table[ids]."""

    def embed_backward(self, ids, dout, dtable):
        """dtable[ids] += dout, repeated ids summed."""

    def linear_forward(self, x, w, b, y):
        """y (M, V) = x (M, H) @ w.T + b; b None: no bias."""

    def linear_backward(self, x, w, dy, dx, dw, db):
        """dw += dy.T @ x; db += the sum of dy's rows (db None: no bias); dx = dy @ w
        (overwritten)."""

    # -- the adaptive softmax's (rnnkit/model/softmax.py) ------------------------------------
    def gather_rows(self, src, rows, out):
        """out (R, H) = src[rows] for src (M, H) and rows (R,) from indices(), distinct."""

    def scatter_add_rows(self, src, rows, dst):
        """dst[rows[r]] += src[r] for src (R, H), distinct rows (R,), dst (M, H)."""

    def softmax_xent(self, logits, targets, scale=1.0, grad=False):
        """Summed cross-entropy in nats, a host float (the GPU's: a float that comes with its
        next readback, kernels/cuda/staging.Deferred); overwrites logits (with grad: by
        scale * dloss/dlogits)."""

    def softmax_xent_rows(self, logits, targets):
        """Each row's cross-entropy, -log softmax(row)[target], as a host float64 array (M,),
        with softmax_xent's numerics; the logits are left as scratch (rnnkit score)."""

    def ragged_xent(self, flat, plan, R, scale=1.0, grad=False):
        """softmax_xent over R rows of different widths in one flat array: row r is
        flat[at:at + width] with its target, (at, width, target) = plan[3 r:3 r + 3] (plan
        from indices()); a row's loss has softmax_xent's numerics."""

    def ragged_xent_rows(self, flat, plan, R):
        """Each of ragged_xent's rows' loss, a host float64 array (R,); rows left as scratch."""

    def adaptive_log_probs(self, flat, bounds, out):
        """out (M, V) = the log-probability of every id under an adaptive softmax, from
        flat = [head logits (M, c_0 + k) | cluster 0's logits (M, c_1 - c_0) | ...] and
        bounds (c_0, ..., c_{k-1}, V), an int64 array on the backend."""

    # -- randomness --------------------------------------------------------------------------
    def rng(self, seed):
        """A generator seeded by an int or a list of ints."""

    def rng_state(self, rng):
        """Its state: a JSON-able dict with a "bit_generator" key (stored in checkpoints)."""

    def set_rng_state(self, rng, state):
        """Restore a state; another backend's (a checkpoint moved between devices) seeds a
        stream from derived_seed(state), the same for the same state."""

    def dropout(self, x, p, rng, mask, out):
        """Inverted dropout: mask = keep / (1 - p), keep drawn from rng; out = x * mask."""

    def sample(self, logits, rng, temperature=1.0, top_k=0, top_p=1.0, greedy=False):
        """Next token of each of the N rows of (N, V) logits, as host ints
        (rnnkit/backends/sampling.py is the reference)."""

    # -- optimizers and clipping (arguments and equations: rnnkit/kernels/cpu/optim.py) -------
    def sgd_update(self, p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov,
                   first, ranges=None):
        """SGD with momentum, dampening, Nesterov and weight decay, in place. ranges: given only
        without momentum and weight decay, (R, 2) int64 [start, stop) runs, sorted, on
        multiples of range_align, of a flat g that is zero outside them
        (rnnkit/model/sparse_rows.py): this and fill, sum_squares, scale and clamp may skip the
        rest, with the same results."""

    def adam_update(self, p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps,
                    weight_decay, shrink):
        """Adam and AdamW, in place."""

    def rmsprop_update(self, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                       weight_decay, momentum, centered):
        """RMSprop, centered or not, with momentum, in place."""

    def adagrad_update(self, p, g, state_sum, clr, eps, weight_decay):
        """Adagrad, in place."""

    def sum_squares(self, g, ranges=None):
        """sum(g^2) accumulated in float64 in a fixed order, a host float; the same bits with
        or without ranges."""

    def scale(self, g, factor, ranges=None):
        """g *= factor."""

    def clamp(self, g, low, high, ranges=None):
        """g = min(max(g, low), high)."""


def derived_seed(state):
    """A seed (a 128-bit int) derived from another backend's RNG state, so that a backend
    given a state it cannot restore (the CPU's PCG64 on a GPU, the GPU's Philox on the CPU)
    starts a stream that is the same for the same state: a SHA-256 of the state as JSON."""
    text = json.dumps(state, sort_keys=True, default=int)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


