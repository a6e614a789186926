"""Compiled kernels. Each wrapper validates, then calls an @njit driver that owns the time loop.

A CUDA twin will follow with the same wrapper signatures; the model layer calls only these.
"""
from rnnkit.threads import limit_blas

limit_blas()

from rnnkit.kernels.gru import gru_backward, gru_forward  # noqa: E402
from rnnkit.kernels.linear import embed_backward, embed_forward, linear_backward, linear_forward
from rnnkit.kernels.loss import softmax_xent
from rnnkit.kernels.lstm import lstm_backward, lstm_forward
from rnnkit.kernels.rnn import rnn_backward, rnn_forward
from rnnkit.kernels.step import layer_step, logits_step, step_scratch

__all__ = ["gru_backward", "gru_forward", "embed_backward", "embed_forward", "linear_backward",
           "linear_forward", "softmax_xent", "lstm_backward", "lstm_forward",
           "rnn_backward", "rnn_forward", "layer_step", "logits_step", "step_scratch"]
