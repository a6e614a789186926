"""The recurrence's launch plans with the real device constants (no GPU needed): every launch
stays within the shared memory it may use (48 KB, or what the kernel opts in to), the
persistent path asks the occupancy question and says why when it is not taken, and the
backend reports a refused opt-in on stderr instead of falling back in silence.
"""
import numpy as np
import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

from numba.core.config import ENABLE_CUDASIM  # noqa: E402

pytestmark = pytest.mark.skipif(ENABLE_CUDASIM, reason="the simulator's launch shapes are "
                                "not the device's (tests/test_cuda_kernels.py runs those)")

H100 = dict(sms=132, shared_max=227 * 1024)
A100 = dict(sms=108, shared_max=163 * 1024)


def plans(G, H, N, itemsize, gpu, resident):
    from rnnkit.kernels.cuda import recurrent
    return [recurrent.make_plan(G, backward, H, N, itemsize, gpu["sms"], gpu["shared_max"],
                                resident, mode)
            for backward in (False, True) for mode in ("auto", "steps")]


@pytest.mark.parametrize("gpu", [H100, A100], ids=["h100", "a100"])
@pytest.mark.parametrize("G,H,N,itemsize", [
    (4, 1100, 1, 4), (4, 1100, 128, 4), (4, 4096, 64, 4), (4, 512, 16, 8), (4, 1100, 1, 8),
    (3, 2048, 128, 8), (1, 8192, 256, 8), (4, 650, 20, 8), (4, 1, 1, 8)])
def test_every_launch_fits_the_shared_memory_it_asks_for(G, H, N, itemsize, gpu):
    """A per-step launch never needs the opt-in (at most 48 KB: fp32 LSTM at N = 1 and
    H = 1100 once asked for 64 KB without it); a persistent one at most what the GPU gives a
    block, and only after asking the occupancy of that much."""
    from rnnkit.kernels.cuda import recurrent
    asked = []

    def resident(shared):
        asked.append(shared)
        return gpu["sms"]               # one block per SM fits

    for p in plans(G, H, N, itemsize, gpu, resident):
        assert p.shared == recurrent.shared_bytes(p.C, p.NS, p.KC, itemsize)
        if p.persistent:
            assert p.shared <= gpu["shared_max"] and p.KC == p.K
            assert p.blocks == 1 or p.shared in asked
            assert p.blocks <= gpu["sms"] and p.cooperative == (p.blocks > 1)
        else:
            assert p.shared <= recurrent.SHARED, p
            assert p.KC % recurrent.LANES == 0 or p.KC == p.K
        assert p.U * p.blocks >= H and 1 <= p.NS <= min(N, recurrent.NSMAX)


def test_a_plan_that_is_not_persistent_says_why():
    from rnnkit.kernels.cuda import recurrent
    p = recurrent.make_plan(4, False, 512, 16, 4, 132, 227 * 1024, lambda shared: 100)
    assert not p.persistent and "128 blocks" in p.why and "100 resident" in p.why
    assert "per step" in p.describe() and p.why in p.describe()
    p = recurrent.make_plan(4, False, 512, 16, 4, 132, 227 * 1024, lambda shared: 132)
    assert p.persistent and p.describe().startswith("persistent cooperative, U 4, 128 blocks")
    with pytest.raises(ValueError, match="does not fit"):
        recurrent.make_plan(4, False, 512, 16, 4, 132, 227 * 1024, lambda s: 0, "persistent")


def _backend():
    """A CUDABackend's occupancy side without a GPU."""
    from types import SimpleNamespace

    from rnnkit.backends.cuda import CUDABackend
    from rnnkit.kernels.cuda import recurrent
    b = CUDABackend.__new__(CUDABackend)
    from rnnkit.kernels.cuda import launch
    b.simulator, b.k = False, SimpleNamespace(recurrent=recurrent, launch=launch)
    return b


class _Kernel:
    __name__ = "lstm_forward_steps"

    def __init__(self, error):
        self.error = error

    def compile(self, argtypes):
        error = self.error

        class Compiled:
            def max_cooperative_grid_blocks(self, threads, shared):
                raise error
        return Compiled()


def test_a_refused_occupancy_query_is_one_line_on_stderr(capsys):
    from numba.cuda.cudadrv.driver import CudaAPIError
    b = _backend()
    assert b._resident(_Kernel(CudaAPIError(1, "CUDA_ERROR_INVALID_VALUE")), (), 256,
                       40000) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lstm_forward_steps: the occupancy query" in err
    assert "one launch per step" in err


def test_other_errors_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        _backend()._resident(_Kernel(ZeroDivisionError()), (), 256, 40000)


def test_the_float64_oracle_shapes_plan_within_48_kb_per_step():
    """The test suite's float64 shapes (tests/test_backend.py) on a GPU: per step, no opt-in."""
    from rnnkit.kernels.cuda import recurrent
    for G in (1, 3, 4):
        for H, N in ((5, 2), (5, 3), (8, 4), (256, 8)):
            for p in plans(G, H, N, np.dtype(np.float64).itemsize, H100, lambda s: 0):
                assert (p.blocks == 1 and p.shared <= H100["shared_max"]) if p.persistent \
                    else p.shared <= recurrent.SHARED, p
