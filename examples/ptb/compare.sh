#!/bin/sh
# Penn Treebank in three vocabularies, compared in bits per character on the test text: the
# word model of run.sh, a byte-level BPE model of the same size and recipe (4,096 tokens), and
# a character model (a 2x256 LSTM with Adam, char-rnn's kind of settings). Each trains for 27
# minutes of wall time on 2 cores. Run run.sh first (it fetches the data and trains the word
# model), then from the repository's root:
#
#     sh examples/ptb/compare.sh [DATA_FOLDER] [WORD_RUN] [RUNS_FOLDER]
#
# TIME=20s sh examples/ptb/compare.sh ... runs the same steps briefly (a check of the script).
#
# Bits per character: each model's bits per token on ptb.test.txt times its tokens per
# character (rnnkit eval --text). Words and BPE tokens spell the same text as the characters,
# so the figures compare; perplexities per token would not.
set -eu
DATA=${1:-data/ptb}
WORD=${2:-runs/ptb-small}
RUNS=${3:-runs}
TIME=${TIME:-27m}
# rnnkit on PATH (an activated .venv), else the repository's .venv
RNNKIT=${RNNKIT:-$(command -v rnnkit || echo .venv/bin/rnnkit)}
. examples/ptb/train.sh
[ -f "$DATA/ptb.test.txt" ] && [ -f "$WORD/best.h5" ] || {
    echo "compare.sh: run examples/ptb/run.sh first (no $DATA/ptb.test.txt or $WORD/best.h5)" >&2
    exit 2
}
SPLITS="--val $DATA/ptb.valid.txt --test $DATA/ptb.test.txt"
"$RNNKIT" preprocess "$DATA/ptb.train.txt" $SPLITS --level bpe --vocab-size 4096 \
    -o "$DATA/ptb-bpe.h5" -f
train "$RUNS/ptb-bpe" "$DATA/ptb-bpe.h5" --cell lstm --layers 2 --hidden 200 \
    --embed 200 --tie-weights --dropout 0.2 --batch-size 20 --seq-len 35 --optimizer sgd \
    --lr 20 --clip-norm 0.25 --schedule plateau --lr-decay-factor 0.25 --epochs 40 \
    --seed 1 --threads 2
"$RNNKIT" preprocess "$DATA/ptb.train.txt" $SPLITS --level char -o "$DATA/ptb-char.h5" -f
train "$RUNS/ptb-char" "$DATA/ptb-char.h5" --cell lstm --layers 2 --hidden 256 \
    --embed 64 --dropout 0.1 --batch-size 32 --seq-len 100 --optimizer adam --lr 2e-3 \
    --schedule plateau --lr-decay-factor 0.5 --eval-every 1000 --epochs 40 --seed 1 --threads 2
printf '%-6s %10s %10s %12s %14s %14s\n' model vocabulary tokens "ppl/token" "bits/token" \
    "bits/char"
for pair in "word $WORD" "bpe $RUNS/ptb-bpe" "char $RUNS/ptb-char"; do
    set -- $pair
    "$RNNKIT" eval "$2/best.h5" --text "$DATA/ptb.test.txt" -q | awk -v m="$1" -v v="$(
        "$RNNKIT" info "$2/best.h5" | sed -n 's/^vocabulary: \([0-9,]*\) tokens.*/\1/p')" '
        { x[$1] = $2 }
        END { printf "%-6s %10s %10d %12.2f %14.4f %14.4f\n", m, v, x["tokens"],
              x["perplexity"], x["bits_per_token"], x["bits_per_char"] }'
done
