"""After training, on a checkpoint: `load.py` (a trained model), `generate.py` and `beam.py`
(text), `score.py` and `eval_checkpoint.py` (losses), `safetensors.py` and `onnx_export.py`
(export and import), `info.py`, `plot.py`, `limits.py` (generation's bounds). Imports
training and everything below it.
"""
