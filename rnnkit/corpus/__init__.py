"""The corpus: text to an HDF5 corpus and back (docs/corpus-format.md).

`preprocess.py` reads text files (`sources.py`), cuts them into tokens (`tokenize.py`; level
bpe: `bpe.py`) and writes the corpus (`chunks.py`, compressing on threads, with HDF5's
Fletcher-32 from `fletcher32.py`); `reader.py` reads it back as training batches;
`textcodec.py` turns text into a model's token ids and back without a corpus file. Imports the
foundation only (but `preprocess --vocab-from`, which reads a checkpoint's vocabulary).
"""
