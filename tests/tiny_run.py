"""A tiny corpus and a tiny trained run, for the tests of train, generate, eval, info, plot."""
from rnnkit.corpus.preprocess import preprocess
from rnnkit.training.train import train
from rnnkit.model.config import TrainConfig

TEXT = "".join(f"line {i}: the quick brown fox {'jumps' if i % 3 else 'naps'} over it.\n"
               for i in range(60))


def make_corpus(folder, level="char", text=TEXT):
    (folder / "t.txt").write_text(text, encoding="utf-8")
    path = folder / f"{level}.h5"
    preprocess([str(folder / "t.txt")], str(path), level=level, val_frac=0.1, test_frac=0.1)
    return str(path)


def tiny_config(corpus, steps=20):
    cfg = TrainConfig()
    cfg.data.corpus, cfg.data.batch_size, cfg.data.seq_len = corpus, 4, 8
    cfg.model.embed, cfg.model.hidden, cfg.model.layers = 8, 16, 1
    cfg.optim.lr = 0.02
    cfg.train.threads, cfg.train.progress, cfg.train.log_every = 1, False, 1
    cfg.train.max_steps, cfg.train.eval_every = steps, 10
    return cfg


def make_run(folder, corpus, steps=20):
    train(tiny_config(corpus, steps), folder / "run")
    return folder / "run"
