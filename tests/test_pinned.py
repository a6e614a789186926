"""Losses pinned before the backend refactor (issue 11), and the same run giving the same bits.

Each cell trains 50 steps in float64 on one thread (dropout 0.1, Adam, clipping, validation at
steps 25 and 50) through the whole training loop. The figures below were recorded at commit
9ca7e1c+ on an AVX-512 host, before model.py, cells.py and the kernels moved behind the backend
interface. Bit identity is promised within one host and build, not across instruction sets
(another vector width or BLAS kernel sums in another order: with NUMBA_CPU_NAME=haswell, a true
AVX2 build since issue 20, 6-11 of the 52 losses differ in the last bits) nor across changes of
a kernel's summation order (the GRU's per-step products in the tiles: 10 losses), so the pins
hold to RTOL; a second run in the same process must match the first bit for bit. Fresh
against cached kernels and resumed against uninterrupted: tests/test_cache_exact.py. The
validation losses were pinned again at stop 36, when the validation came to score the split's
last, shorter batch (tests/test_train.py checks it against `rnnkit eval`'s figure).
"""
import json

import pytest

from rnnkit.training.train import train
from rnnkit.model.config import TrainConfig
from tests.tiny_run import make_corpus

RTOL = 1e-12    # float64 over 50 steps; the differences above are at most 4.4e-16 relative

FIGURES = {
    "rnn-tanh": {
        "train": ["0x1.c9f6900e2bb19p+1", "0x1.c81f42c6a065ap+1", "0x1.c2c7d706504dfp+1",
            "0x1.b7a9ea5f31242p+1", "0x1.bc4aa6076bc09p+1", "0x1.acdc6e60dd201p+1",
            "0x1.a418ec487f1b0p+1", "0x1.a5676c1564c8fp+1", "0x1.9eeee0c1c4d14p+1",
            "0x1.8f0dd6e337066p+1", "0x1.982ff50a96b5ep+1", "0x1.8bdb849e99001p+1",
            "0x1.9301400ccd453p+1", "0x1.9f3a3242b1dafp+1", "0x1.87288c0dbcd15p+1",
            "0x1.9a3587d928ce9p+1", "0x1.9f1714b558c86p+1", "0x1.864d103f2c66dp+1",
            "0x1.99fc83d53f821p+1", "0x1.8e659571315f2p+1", "0x1.90b014e4ab278p+1",
            "0x1.95b3c97f47d04p+1", "0x1.8bbe48ccf7aaep+1", "0x1.948f84727edf4p+1",
            "0x1.9a78b4895b9c0p+1", "0x1.85338c5316691p+1", "0x1.8aa5b038c5226p+1",
            "0x1.97e7b2815f37dp+1", "0x1.8eb2b01ecc972p+1", "0x1.8f4be1f56465dp+1",
            "0x1.957c48087fbf1p+1", "0x1.8b5aeb322d811p+1", "0x1.9930fe9d911b8p+1",
            "0x1.84443812b1e76p+1", "0x1.9925f7dc6fa9bp+1", "0x1.81aac43ce2a42p+1",
            "0x1.880566d292a5fp+1", "0x1.9e73b1d7555b4p+1", "0x1.7cc7e87375cbep+1",
            "0x1.8ae5245106e3ep+1", "0x1.9992069151f66p+1", "0x1.7e7d5d59cb10fp+1",
            "0x1.949e03880d465p+1", "0x1.7d6b9284036b0p+1", "0x1.82cc88694f1f2p+1",
            "0x1.9950d39761757p+1", "0x1.7638e568e337dp+1", "0x1.873a61ab2c33cp+1",
            "0x1.91e2235630f81p+1", "0x1.708855115b26ap+1"],
        "val": ["0x1.92e51c1795b3bp+1", "0x1.838899bb4133dp+1"],
    },
    "rnn-relu": {
        "train": ["0x1.cac8f6599a81dp+1", "0x1.caedfee14294dp+1", "0x1.c8238d778d731p+1",
            "0x1.c51c6dbbb6c45p+1", "0x1.c734d35846d9bp+1", "0x1.c245262c3b0bap+1",
            "0x1.c0fea8af77072p+1", "0x1.beab4ceaba1ddp+1", "0x1.b8feeaac38734p+1",
            "0x1.b3ff204bedb3bp+1", "0x1.a9d590c0982c5p+1", "0x1.9f7d7efd9ba2bp+1",
            "0x1.a85a0a0c40df1p+1", "0x1.977e81ea94da4p+1", "0x1.948d88b59703dp+1",
            "0x1.ab231dc90cee7p+1", "0x1.9ee0d9a46d972p+1", "0x1.8e740ed77f065p+1",
            "0x1.94e3638fcd518p+1", "0x1.9416bb6084079p+1", "0x1.974130adc3d16p+1",
            "0x1.980b723dbb306p+1", "0x1.9036e973e8648p+1", "0x1.989989b6a3e26p+1",
            "0x1.9e029ba002a36p+1", "0x1.897259d7de9a8p+1", "0x1.8f7e71e5e551dp+1",
            "0x1.98a1667058458p+1", "0x1.8da54c2fb15a8p+1", "0x1.976695508eebep+1",
            "0x1.8e9c875b9051cp+1", "0x1.8a07f6a3ae25bp+1", "0x1.980063f6e954cp+1",
            "0x1.7fb40b5640e9fp+1", "0x1.97f3fabc942f1p+1", "0x1.828c3ee010060p+1",
            "0x1.813274318a313p+1", "0x1.921a355a9b5a1p+1", "0x1.7e7147071ffa3p+1",
            "0x1.81c339047fca3p+1", "0x1.93be236ec3f6bp+1", "0x1.77bf01f0e9599p+1",
            "0x1.8435fe330e6aep+1", "0x1.765c143be1e2dp+1", "0x1.7443167589816p+1",
            "0x1.85af106a2ba00p+1", "0x1.70b64b0e33261p+1", "0x1.75eb4a85342fep+1",
            "0x1.7d5a6d692732ep+1", "0x1.63d190c2c41a0p+1"],
        "val": ["0x1.94694bf0199e0p+1", "0x1.6c180223580d9p+1"],
    },
    "lstm": {
        "train": ["0x1.c95666dda9090p+1", "0x1.c8e6c1a224df5p+1", "0x1.c4627731d1c5dp+1",
            "0x1.bdd5b02bc8a8ep+1", "0x1.c02fb0039cb49p+1", "0x1.b6bc314380d4dp+1",
            "0x1.b2eab78f5baa8p+1", "0x1.aec49f2f54c96p+1", "0x1.a3e6890e118a7p+1",
            "0x1.a068c85cec473p+1", "0x1.9c6287b3ee189p+1", "0x1.90a0439fddd85p+1",
            "0x1.9a2c393896e9dp+1", "0x1.9745fee5ca8adp+1", "0x1.8b18750278d3fp+1",
            "0x1.99af9b27dd291p+1", "0x1.988b27977c709p+1", "0x1.8aa0d23fe8f5ap+1",
            "0x1.9568b505ffe83p+1", "0x1.8e1cc707b2070p+1", "0x1.946de7ec74a28p+1",
            "0x1.91fad1261c027p+1", "0x1.8c0c0b25355cfp+1", "0x1.95b31b56c8266p+1",
            "0x1.9a780620c07d4p+1", "0x1.83d74071ad219p+1", "0x1.8c80025e959e1p+1",
            "0x1.983ba67bb1c48p+1", "0x1.8e048da802b88p+1", "0x1.9304abbfe71cep+1",
            "0x1.94fbc2a41207dp+1", "0x1.8f812b2696527p+1", "0x1.9be8cf12a72b1p+1",
            "0x1.85194c7b01f1cp+1", "0x1.9accb45e0b994p+1", "0x1.877158bdf4956p+1",
            "0x1.8caa56172b73cp+1", "0x1.9cedd63918de5p+1", "0x1.851d2069e8a54p+1",
            "0x1.8e836bb94d55cp+1", "0x1.9eb20e416654dp+1", "0x1.8431162faa10cp+1",
            "0x1.9645149714da5p+1", "0x1.8aed274bbd903p+1", "0x1.89d8acf9e7e77p+1",
            "0x1.9f87ea160448fp+1", "0x1.824df690ca59fp+1", "0x1.8eba777a86355p+1",
            "0x1.a067517b37b59p+1", "0x1.81cebc43aaa57p+1"],
        "val": ["0x1.94131583911d3p+1", "0x1.9144cccf46e66p+1"],
    },
    "gru": {
        "train": ["0x1.c9ee2c3c04b2ep+1", "0x1.c9cc69a39a6e3p+1", "0x1.c55e899d9a240p+1",
            "0x1.c1935a09af305p+1", "0x1.c08265daf6c55p+1", "0x1.b8ca575b24d6cp+1",
            "0x1.b47c60b616ee6p+1", "0x1.b138e66a916edp+1", "0x1.a5e029e1e9f4fp+1",
            "0x1.9c1dc91a5b681p+1", "0x1.9dbbfa1c7dad2p+1", "0x1.91f1fbafd47b0p+1",
            "0x1.9743cbe1b58a2p+1", "0x1.9b88c8cb0ec86p+1", "0x1.8a77a7b007d23p+1",
            "0x1.9cd32c8c07884p+1", "0x1.9b4618c8bd69cp+1", "0x1.87e48932b9c96p+1",
            "0x1.97268502f9797p+1", "0x1.8edadb194ad62p+1", "0x1.949d864c92c6fp+1",
            "0x1.92d61d905a0cep+1", "0x1.8c7cecadee9c7p+1", "0x1.974fb2da92b58p+1",
            "0x1.9ba2fd863f5b1p+1", "0x1.8224d465f19d6p+1", "0x1.8db2a4292e97cp+1",
            "0x1.99139963f3f45p+1", "0x1.8bf44175a8fbap+1", "0x1.90d633bdda4b0p+1",
            "0x1.95fc9ae42ab68p+1", "0x1.8eceab4c83149p+1", "0x1.98e25691ccca2p+1",
            "0x1.8503a3f9342bep+1", "0x1.9c300bbd608e0p+1", "0x1.8417b7dbc8d13p+1",
            "0x1.8d613a7f38a17p+1", "0x1.9eac73e1eedb8p+1", "0x1.82c81a79c2097p+1",
            "0x1.8d0cc5dad4ac3p+1", "0x1.9d2c508f2ab41p+1", "0x1.85ea67fa0ebe7p+1",
            "0x1.964890f824852p+1", "0x1.8390dd7d50519p+1", "0x1.83f3272737ed5p+1",
            "0x1.9e6c0bba936f9p+1", "0x1.7fa69eb10128ep+1", "0x1.887de7f6d6049p+1",
            "0x1.96820e7d51586p+1", "0x1.8220967cf4f14p+1"],
        "val": ["0x1.92e6da8b14f5dp+1", "0x1.8854ddb8f8639p+1"],
    },
}


def run(cell, folder):
    cfg = TrainConfig()
    cfg.data.corpus, cfg.data.batch_size, cfg.data.seq_len = make_corpus(folder), 4, 16
    cfg.model.cell, cfg.model.embed, cfg.model.hidden, cfg.model.layers = cell, 8, 16, 2
    cfg.model.dropout, cfg.model.dtype = 0.1, "float64"
    cfg.optim.lr = 0.01
    cfg.train.threads, cfg.train.progress, cfg.train.log_every = 1, False, 1
    cfg.train.max_steps, cfg.train.eval_every = 50, 25
    train(cfg, folder / "run")
    records = [json.loads(line) for line in open(folder / "run" / "metrics.jsonl")]
    return {key: [float(r[f"{key}_loss"]) for r in records if f"{key}_loss" in r]
            for key in ("train", "val")}


@pytest.mark.parametrize("cell", list(FIGURES))
def test_losses_match_the_pinned_ones_and_repeat_bit_for_bit(cell, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = run(cell, tmp_path / "a"), run(cell, tmp_path / "b")
    assert {k: [x.hex() for x in v] for k, v in first.items()} == \
        {k: [x.hex() for x in v] for k, v in second.items()}
    for key, pinned in FIGURES[cell].items():
        assert len(first[key]) == len(pinned)
        assert first[key] == pytest.approx([float.fromhex(x) for x in pinned], rel=RTOL, abs=0)
