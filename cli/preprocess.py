"""`rnnkit preprocess`."""
import sys

import click

from rnnkit.cli.options import ConfigOption
from rnnkit.corpus.sources import BLOCK, SNIFF
from rnnkit.corpus.tokenize import LEVELS
SHOW_PROGRESS_BYTES = 4 * BLOCK   # smaller inputs finish too fast for a bar to help


@click.command("preprocess")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Corpus file to write (HDF5).")
@click.option("--level", type=click.Choice(LEVELS), default=None, cls=ConfigOption,
              show_default=True, default_text="char, or --vocab-from's",
              help="Tokens: Unicode code points, raw bytes, whitespace-separated words "
                   "(each newline an <eos> token), or byte-level BPE subwords (--vocab-size; "
                   "needs rnnkit[bpe]).")
@click.option("--encoding", type=str, default="utf-8", show_default=True,
              help="Text encoding of the inputs (char and word level; byte level stores it "
                   "for decoding).")
@click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict",
              show_default=True,
              help="Invalid bytes: stop with the file and byte offset, or replace them by U+FFFD.")
@click.option("--val-frac", type=click.FloatRange(0, 1, max_open=True), default=None,
              cls=ConfigOption, show_default=True, default_text="0.1",
              help="Fraction of the tokens cut from the end of the input for validation "
                   "(0 when --val or --test FILE is given).")
@click.option("--test-frac", type=click.FloatRange(0, 1, max_open=True), default=None,
              cls=ConfigOption, show_default=True, default_text="0.1",
              help="Fraction cut from the very end for testing (0 when --val or --test FILE "
                   "is given).")
@click.option("--val", "val", type=str, multiple=True, metavar="FILE",
              help="Validation text (file, folder or glob; repeat it for more) instead of "
                   "--val-frac.")
@click.option("--test", "test", type=str, multiple=True, metavar="FILE",
              help="Test text (file, folder or glob; repeat it for more) instead of "
                   "--test-frac.")
@click.option("--vocab-from", type=click.Path(dir_okay=False), default=None, show_default=True,
              help="Reuse the vocabulary (and level) of this corpus, or of this checkpoint, so "
                   "both share token ids. "
                   "Word level maps new words to <unk> (and stops at the first where it has "
                   "none); char and byte level stop at the first "
                   "symbol it lacks; bpe level encodes any text with its tokenizer.")
@click.option("--max-vocab", type=click.IntRange(min=3), default=None, show_default=True,
              help="Word level: keep at most this many tokens, <unk> and <eos> included "
                   "[default: no limit].")
@click.option("--min-count", type=click.IntRange(min=1), default=1, show_default=True,
              help="Word level: words seen fewer times become <unk>. BPE level: pairs seen "
                   "fewer times in the training split are not merged.")
@click.option("--vocab-size", type=int, default=None, show_default=True,
              help="BPE level: tokens in all, the 256 byte values included (fewer if the "
                   "text runs out of pairs to merge) [required with --level bpe].")
@click.option("-f", "--force", is_flag=True, default=False, show_default=True,
              help="Overwrite OUTPUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, default=False, show_default=True,
              help="No progress bar and no summary on stderr.")
def command(inputs, output, level, encoding, errors, val_frac, test_frac, val, test,
            vocab_from, max_vocab, min_count, vocab_size, force, quiet):
    """Turn text files into a corpus of token ids for `rnnkit train`.

    INPUT is a file, a folder (its text files, recursively, in sorted order) or a glob. The
    vocabulary is built from all the text (a BPE tokenizer learns from the training part
    only); --val-frac and --test-frac cut contiguous blocks from the end for validation and
    testing, as torch-rnn does. The layout of the HDF5 file is in docs/corpus-format.md.

    \b
    rnnkit preprocess shakespeare.txt -o shakespeare.h5
    rnnkit preprocess ptb.train.txt --val ptb.valid.txt --test ptb.test.txt \\
        --level word -o ptb.h5
    rnnkit preprocess 'books/**/*.txt' --level byte -o books.h5
    rnnkit preprocess shakespeare.txt --level bpe --vocab-size 2000 -o bpe.h5
    """
    from rnnkit.corpus.preprocess import preprocess
    from rnnkit.corpus.sources import InputError

    def progress(total):
        if quiet or total < SHOW_PROGRESS_BYTES or not sys.stderr.isatty():
            return None
        return click.progressbar(length=total, label="preprocess", file=sys.stderr,
                                 show_pos=False, show_percent=True, show_eta=True)

    try:
        summary = preprocess(
            inputs, output,
            level=level, encoding=encoding, errors=errors, val_frac=val_frac,
            test_frac=test_frac, val=list(val) or None, test=list(test) or None,
            vocab_from=vocab_from, max_vocab=max_vocab, min_count=min_count,
            vocab_size=vocab_size, force=force, progress=progress)
    except InputError as err:
        raise click.ClickException(str(err)) from None
    if not quiet:
        for path, size, pid in summary["removed"]:
            click.echo(f"removed {path} ({size:,} bytes), left by a killed rnnkit (PID {pid})",
                       err=True)
        if summary["skipped"]:
            names = summary["skipped"]
            click.echo(f"note: left out {len(names)} binary file(s) (a NUL byte in the first "
                       f"{SNIFF // 1024} KiB): {', '.join(names[:5])}"
                       f"{', ...' if len(names) > 5 else ''}", err=True)
        for path in summary["marked"]:
            click.echo(f"note: {path} starts with a UTF-8 byte order mark, kept as the "
                       f"character U+FEFF; --encoding utf-8-sig leaves it out", err=True)
        splits = ", ".join(f"{name} {n:,}" for name, n in summary["splits"].items())
        unk = f"; <unk> {summary['unk']:,}" if summary["unk"] else ""
        size = summary["bytes"]
        size = f"{size:,} bytes" if size < 1e6 else f"{size / 1e6:,.1f} MB"
        click.echo(f"wrote {summary['output']}: {summary['level']} level, vocabulary "
                   f"{summary['vocab_size']:,} ({summary['dtype']}); tokens: {splits}{unk}; "
                   f"{summary['files']} file(s), {size} in {summary['seconds']:.1f} s", err=True)


command.reports_only = True       # its stdout lines are progress: see cli/main.py
