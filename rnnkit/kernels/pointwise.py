"""The per-element math of the cells and the optimizers, written once: plain functions that
kernels/cpu compiles with @njit and kernels/cuda as CUDA device functions (`build`). The GPU's
cell kernels and both backends' optimizers call them; the CPU's cell kernels keep loops split
for LLVM's vectoriser, and tests/test_pointwise.py holds them to these definitions bit for bit.

Each function takes and returns scalars, so a kernel calls it on one element and keeps its own
loop, layout and parallelism. Constants arrive as arguments in the kernel's dtype (`half`,
`one`): a Python float literal would promote float32 arithmetic to float64. `tanh` is the one
name that differs by target: the CPU's (kernels/cpu/activations.py: a rational form in float32,
libm in float64) and CUDA's libdevice `math.tanh`; `build` binds it.

Gate orders and equations: docs/cells.md. The optimizers are torch.optim's (maximize=False,
no amsgrad); kernels/cpu/optim.py writes each one out in its docstring.
"""
import math
import types


def tanh(x):
    return math.tanh(x)


def sigmoid(x, half):
    return half * tanh(half * x) + half


# -- cells: forward from pre-activations, backward from the cached activations ---------------

def lstm_cell(gi, gf, gg, go, c_prev, half):
    """(i, f, g, o, c, h) from the pre-activations and c_{t-1}."""
    i = sigmoid(gi, half)
    f = sigmoid(gf, half)
    g = tanh(gg)
    o = sigmoid(go, half)
    c = f * c_prev + i * g
    return i, f, g, o, c, o * tanh(c)


def lstm_cell_grad(i, f, g, o, c_prev, c, dh, dc, one):
    """(di, df, dg, do, dc_{t-1}) of the pre-activations from dh and dc (the gradients on h_t
    and c_t from above and from step t + 1)."""
    tc = tanh(c)
    do = dh * tc * o * (one - o)
    dcv = dc + dh * o * (one - tc * tc)
    di = dcv * g * i * (one - i)
    dg = dcv * i * (one - g * g)
    df = dcv * c_prev * f * (one - f)
    return di, df, dg, do, dcv * f


def gru_cell(xr, xz, xn, hr, hz, an, h_prev, half, one):
    """(r, z, n, h): xr, xz, xn the input side's sums (with b), hr, hz the hidden side's,
    an = h W_hn + b_hn."""
    r = sigmoid(xr + hr, half)
    z = sigmoid(xz + hz, half)
    n = tanh(xn + r * an)
    return r, z, n, (one - z) * n + z * h_prev


def gru_cell_grad(r, z, n, an, h_prev, d, one):
    """(dr, dz, dn, direct part of dh_{t-1}) from d, the gradient on h_t."""
    dn = d * (one - z) * (one - n * n)
    dz = d * (h_prev - n) * z * (one - z)
    dr = dn * an * r * (one - r)
    return dr, dz, dn, d * z


def rnn_cell(v, relu, zero):
    return max(v, zero) if relu else tanh(v)


def rnn_cell_grad(h, d, relu, zero, one):
    """The gradient on the pre-activation, from the output h (tanh' = 1 - h^2, relu' = [h > 0])."""
    if relu:
        return d if h > zero else zero
    return d * (one - h * h)


# -- optimizers: one parameter's update, returning its new value and state --------------------

def sgd(p, g, b, lr, momentum, one_minus_damp, weight_decay, nesterov, first, use_wd,
        use_momentum):
    d = g
    if use_wd:
        d = d + weight_decay * p
    if use_momentum:
        if first:
            b = d
        else:
            b = momentum * b + one_minus_damp * d
        if nesterov:
            d = d + momentum * b
        else:
            d = b
    return p - lr * d, b


def adam(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay, shrink,
         use_wd, use_shrink):
    d = g
    if use_shrink:
        p = p * shrink
    if use_wd:
        d = d + weight_decay * p
    m = m + beta1c * (d - m)
    v = beta2 * v + beta2c * d * d
    return p - step_size * (m / (math.sqrt(v) / bc2_sqrt + eps)), m, v


def rmsprop(p, g, s, ga, b, lr, alpha, one_minus_alpha, eps, weight_decay, momentum, centered,
            use_wd, use_momentum):
    d = g
    if use_wd:
        d = d + weight_decay * p
    s = alpha * s + one_minus_alpha * d * d
    if centered:
        ga = ga + one_minus_alpha * (d - ga)
        avg = math.sqrt(s - ga * ga) + eps
    else:
        avg = math.sqrt(s) + eps
    if use_momentum:
        b = momentum * b + d / avg
        return p - lr * b, s, ga, b
    return p - lr * (d / avg), s, ga, b


def adagrad(p, g, s, clr, eps, weight_decay, use_wd):
    d = g
    if use_wd:
        d = d + weight_decay * p
    s = s + d * d
    return p - clr * (d / (math.sqrt(s) + eps)), s


NAMES = ("sigmoid", "lstm_cell", "lstm_cell_grad", "gru_cell", "gru_cell_grad", "rnn_cell",
         "rnn_cell_grad", "sgd", "adam", "rmsprop", "adagrad")


def build(compile_fn, tanh_impl):
    """The functions of NAMES compiled by compile_fn (njit or cuda.jit(device=True)), each
    calling tanh_impl as `tanh` and the others compiled alongside: a namespace of them."""
    scope = dict(globals())
    out = types.SimpleNamespace()
    scope["tanh"] = tanh_impl
    for name in NAMES:
        fn = globals()[name]
        copy = types.FunctionType(fn.__code__, scope, name, fn.__defaults__, fn.__closure__)
        copy.__qualname__, copy.__module__, copy.__doc__ = name, fn.__module__, fn.__doc__
        setattr(out, name, compile_fn(copy))
        scope[name] = getattr(out, name)
    return out
