"""The model: `network.py` (the Model: embedding, layers, output; no array math of its own),
`softmax.py` (the output layer, full or adaptive), `optim.py` (optimizers, clipping),
`schedule.py` (learning-rate schedules) and `config.py` (a run's settings, one dataclass per
TOML table). Imports the backends and the foundation.
"""
