"""What a run does around its kernels on this machine: compile ahead on a cold cache, and pace
its threads. Neither changes a number; both are policies of the run, not of the backend.

    runtime = Runtime(model.backend)
    runtime.prepare(model, N, T, "adam")     # before the first training step
    runtime.begin()
    ... each step: runtime.observe(tokens, seconds)
    runtime.end()                            # after the run

The training loop (rnnkit/training/loop.py) owns one, as do evaluation, scoring and generating. On
the CPU, on a cold cache, prepare() starts a compile worker for the backward kernels
(rnnkit/training/compile_workers.py) and compiles the forward ones here meanwhile, then takes every
backward task the worker has not taken and waits for the others, so that the first step finds
everything compiled; with several threads the run starts on the serial builds (one thread)
while a later worker compiles the threaded ones, and a last one what `rnnkit generate` needs.
Pacing is the thread governor's (rnnkit/backends/threads.py): it times steady work and runs fewer
threads while other processes hold the cores. A GPU run needs neither: every method is then a
no-op.
"""
from rnnkit.training import compile_workers
from rnnkit.backends import threads
from rnnkit.kernels import cache



def kept():
    """What becomes of kernels compiled now (kernels/cache.py), for the notes that say so."""
    return cache.kept()

class Runtime:
    def __init__(self, backend):
        self.backend = backend
        self.cpu = backend.name == "cpu"
        self._workers = {}          # compile workers by group
        self._later = []            # specs of workers after the backward one, in turn
        self._capped = False        # prepare() capped the process's threads

    def compiling(self, model, sampling=False):
        """Whether the first step (with `sampling`, the first sampled token) will wait for the
        compiler."""
        if sampling and self.cpu:
            return not self.backend.sampling_cached(model.dtype)
        return not self.backend.compiled(model.cell, model.dtype)

    def prepare(self, model, N, T, optimizer):
        """Before a first training step of (N, T) batches: on a cold cache, compile its kernels
        with the help of workers (module docstring). Writes the model's workspace and
        gradients, never its parameters or state."""
        if not (self.cpu and cache.CACHE):
            return
        b, cell = self.backend, model.cell
        spec = compile_workers.spec(model, N, T, optimizer, "backward")
        if threads.partition() > 1:
            if b.cached(cell, True, model.dtype):
                return              # the first step runs the threaded builds, all cached
            threads.cap(1)
            self._capped = True
            self._later.append({**spec, "group": "parallel"})
        if not b.cached(cell, False, model.dtype):
            self._workers["backward"] = compile_workers.spawn(spec)
            self._compile_here(model, spec)
        if self._workers or self._later:
            self._later.append({**spec, "group": "sampling"})

    def _compile_here(self, model, spec):
        """This process's share: the forward kernels, then every backward task that no other
        process holds, then (loading what they wrote) those that others hold."""
        compile_workers.forward(model, spec["N"], spec["T"])
        todo = set(compile_workers.TASKS)
        for wait in (False, True):
            for name in compile_workers.TASKS:
                if name in todo:
                    with compile_workers.turn(spec, name, wait) as mine:
                        if mine:
                            compile_workers.task(model, spec, name)
                            todo.discard(name)

    def prepare_sampling(self, model):
        """Before generating on a cold cache: a worker compiles the sampling step's kernels
        while this process runs the prime; sampling_ready() waits for it."""
        if self.cpu and cache.CACHE and not self.backend.sampling_cached(model.dtype):
            self._workers["step"] = compile_workers.spawn(
                compile_workers.spec(model, 1, 1, "sgd", "step"))

    def sampling_ready(self):
        """Wait for prepare_sampling()'s worker (rather than compile its kernels here too)."""
        worker = self._workers.pop("step", None)
        if worker is not None:
            worker.wait()           # it failed? then this process compiles what it lacks

    def begin(self):
        """Steady work (training, evaluation, sampling) is about to start."""
        if self.cpu:
            threads.begin()

    def observe(self, work, seconds):
        """One unit of steady work done: `work` tokens in `seconds`."""
        if self._workers or self._later:
            self._tend_workers()
        if self.cpu:
            threads.observe(work, seconds)

    def end(self):
        """The run is over (or its threaded builds are cached): lift prepare()'s cap on threads,
        which is the process's. A worker still compiling goes on (its builds serve the next
        run) and ends with this process."""
        if self._capped:
            self._capped = False
            threads.cap(None)

    def _tend_workers(self):
        """Start the later workers one at a time once the backward one is done; when the
        threaded builds' worker is done, let the governor run more threads."""
        for group, worker in list(self._workers.items()):
            if worker.poll() is not None:
                del self._workers[group]
                if group == "parallel":
                    self.end()
        if self._later and not self._workers:
            spec = self._later.pop(0)
            self._workers[spec["group"]] = compile_workers.spawn(spec)
