"""A training run: `train.py` starts or resumes one, `run.py` holds its state, `loop.py` takes
its steps; `checkpoint.py` (the file), `folder.py` (the run folder), `paths.py`, `log.py`
(progress and metrics), `evaluate.py` (validation, and `rnnkit eval`'s loss), `runtime.py` and
`compile_workers.py` (compiling ahead on a cold cache), `distributed.py` (MPI),
`stop_signals.py`, `clock.py`. Imports the model, the corpus, the backends and the foundation.
"""
