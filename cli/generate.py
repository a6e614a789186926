"""`rnnkit generate`: sample text from a checkpoint, streamed to stdout (or -o FILE) as it is
produced; --interactive: a prime per line of standard input, a continuation for each."""
import contextlib
import sys

import click
from click.core import ParameterSource

from rnnkit.cli.options import placement, text_encoding, unknown_applies
from rnnkit.corpus.textcodec import UNKNOWN
from rnnkit.errors import RnnkitError
from rnnkit.tools.limits import MAX_LENGTH, MIN_TEMPERATURE, SEED_LIMIT

SEPARATOR = "--- sample {n} of {N} ---"


@click.command("generate")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--length", type=click.IntRange(0, MAX_LENGTH), default=2000, show_default=True,
              help="Tokens to generate after the prime (at most, with --stop or --until-eos).")
@click.option("--prime", default="", show_default=True,
              help="Text to start from, read after a line break; echoed first as the model "
                   "reads it (an unknown word as <unk>).")
@click.option("--prime-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              default=None, help="Start from the text of this file instead (echoed first; -: "
                                 "standard input).")
@click.option("--encoding", default=None, callback=text_encoding,
              help="Encoding of --prime-file and of --interactive's input.  [default: the "
                   "corpus's]")
@click.option("--temperature", type=click.FloatRange(MIN_TEMPERATURE), default=1.0,
              show_default=True, help="Below 1: safer text; above 1: more varied.")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Sample only from the k most likely tokens (0: all).")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0,
              show_default=True, help="Sample from the smallest set of tokens whose "
              "probabilities add up to p (1: all).")
@click.option("--greedy", is_flag=True, help="Always take the most likely token.")
@click.option("--stop", multiple=True, metavar="STRING",
              help="Stop once the text after the prime contains STRING (it ends the text); "
                   "give it again for more.")
@click.option("--until-eos", is_flag=True,
              help="Word level: stop after the first <eos> (the end of a line).")
@click.option("--seed", type=click.IntRange(0, SEED_LIMIT - 1), default=None,
              help="Random seed; the same seed gives the same text.  [default: a fresh one, "
              "printed on stderr]")
@click.option("--num-samples", type=click.IntRange(1), default=1, show_default=True,
              help="Independent samples, one after the other; with --beam, the best "
                   "hypotheses, each with its log-probability and score on stderr.")
@click.option("--separator", default=SEPARATOR, show_default=True, metavar="TEXT",
              help="With --num-samples above 1: a line written before each sample, to stdout "
                   "or -o; {n} is the sample's number, {N} the number of samples; '' for none.")
@click.option("--beam", type=click.IntRange(0), default=0, show_default=True, metavar="K",
              help="Beam search: the most likely text by K hypotheses (no sampling; 0: off).")
@click.option("--length-penalty", type=click.FloatRange(0), default=0.0, show_default=True,
              metavar="ALPHA", help="--beam: rank by log-probability / ((5 + tokens) / 6) ** "
              "ALPHA (GNMT); 0: by log-probability, above 0: longer texts fare better.")
@click.option("--unknown", type=click.Choice(UNKNOWN), default="error",
              show_default="error; word level: <unk>",
              help="Prime characters (bytes) that the vocabulary lacks: stop and name the "
                   "first, leave them out, or replace them by a known one.")
@click.option("-i", "--interactive", is_flag=True,
              help="Read a prime per line of standard input; write its continuation (the "
                   "prime not echoed) and a newline, then read the next. A prime that cannot "
                   "be used gets one error line on stderr and an empty line on stdout in place "
                   "of its continuation (the exit status is then 1).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the text to this file (when complete) instead of stdout (-: stdout).")
@click.option("-f", "--force", is_flag=True, default=False, show_default=True,
              help="Overwrite OUTPUT if it exists.")
@placement
@click.pass_context
def command(ctx, checkpoint, length, prime, prime_file, encoding, temperature, top_k, top_p,
            greedy, stop, until_eos, seed, num_samples, separator, beam, length_penalty,
            unknown, interactive, output, force, device, threads):
    """Generate text from a trained CHECKPOINT (best.h5, latest.h5 or step-N.h5).

    \b
    rnnkit generate runs/char/best.h5 --length 500 --prime "ROMEO:" --temperature 0.8
    rnnkit generate runs/char/best.h5 --prime-file start.txt --stop $'\\n\\n' -o out.txt
    rnnkit generate runs/ptb/best.h5 --prime "the market" --top-p 0.9 --until-eos
    rnnkit generate runs/ptb/best.h5 --prime "the market" --beam 8 --num-samples 3 --until-eos
    rnnkit generate runs/char/best.h5 --num-samples 3 --separator '=== {n} ===' -o three.txt
    echo "the market" | rnnkit generate runs/ptb/best.h5 --interactive --until-eos
    """
    from rnnkit import files
    from rnnkit.api import load
    from rnnkit.tools.beam import check_beam
    from rnnkit.tools.generate import check_options, check_stop, check_until_eos
    from rnnkit.api.language_model import fresh_seed
    from rnnkit.tools.load import compiling_note
    from rnnkit.corpus.textcodec import UnknownSymbol, read_text

    if prime and prime_file:
        raise click.UsageError("give --prime or --prime-file, not both")
    prime_file = "/dev/stdin" if prime_file == "-" else prime_file
    output = None if output == "-" else output
    if interactive and (prime or prime_file or output):
        raise click.UsageError("--interactive reads its primes from standard input and "
                               "writes to stdout: no --prime, --prime-file or -o")
    try:
        check_options(temperature, top_k, top_p, length, num_samples, stop)
        if beam:
            check_beam(beam, num_samples, length_penalty)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    sampling = [f"--{name.replace('_', '-')}" for name in ("temperature", "top_k", "top_p",
                                                            "greedy", "seed")
                if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT]
    if beam and sampling:
        raise click.UsageError(f"--beam searches for the most likely text: {sampling[0]} "
                               f"(sampling) does not apply")
    shaping = [s for s in sampling if s in ("--temperature", "--top-k", "--top-p")]
    if greedy and shaping:
        raise click.UsageError(f"--greedy takes the most likely token each step: {shaping[0]} "
                               f"(sampling) does not apply")
    if length_penalty and not beam:
        raise click.UsageError("--length-penalty ranks the hypotheses of --beam; give --beam K")
    if output is not None:
        files.check_output(output, force, inputs=[checkpoint] + ([prime_file] if prime_file
                                                                 else []))
    lm = load(checkpoint, device=device, threads=threads)
    codec = lm.codec
    unknown_applies(codec.level, unknown)
    try:
        check_until_eos(codec, until_eos)
        check_stop(codec, stop)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if prime_file:
        prime = read_text(prime_file, codec.level, encoding or codec.encoding)
    fresh = seed is None and not beam and not greedy    # greedy draws nothing to replay
    if seed is None and not beam:
        seed = fresh_seed()
    # a fresh seed is said once the prime is known good (a bad prime is one line)
    say_seed = (lambda: click.echo(f"seed {seed}", err=True)) if fresh else (lambda: None)
    if note := compiling_note(lm.model, sampling=True):
        click.echo(note, err=True)

    def samples(prime, key, echo=True):
        """The pieces of each of the num_samples samples; with --beam, the best hypotheses,
        each one's score on stderr (an empty text for any the search could not find)."""
        if beam:
            found = lm.beam_search(prime, length, beam, length_penalty=length_penalty,
                                   stop=stop, until_eos=until_eos, unknown=unknown,
                                   num_samples=num_samples)
            head = lm.prime_text(prime, unknown) if echo else ""
            for n in range(num_samples):
                if n < len(found):
                    h = found[n]
                    click.echo(f"--- hypothesis {n + 1} of {num_samples}: logprob "
                               f"{h.logprob:.4f}, score {h.score:.4f}, {len(h.ids)} tokens ---",
                               err=True)
                    yield [head + h.text]
                else:
                    click.echo(f"--- hypothesis {n + 1} of {num_samples}: none (the search "
                               f"found {len(found)}) ---", err=True)
                    yield []
            return
        for n in range(num_samples):
            yield lm.pieces(prime, length, temperature=temperature, top_k=top_k, top_p=top_p,
                            greedy=greedy, seed=key + [n], stop=stop, until_eos=until_eos,
                            unknown=unknown, echo=echo)

    def header(n):
        """The separator line before sample n (from 0), or nothing."""
        if num_samples < 2 or not separator:
            return ""
        return separator.replace("{n}", str(n + 1)).replace("{N}", str(num_samples)) + "\n"

    try:
        if interactive:
            say_seed()
            failed = _interactive(samples, codec, unknown, num_samples, seed, header,
                                  encoding or codec.encoding)
            if failed:
                raise click.ClickException(f"{failed} prime(s) could not be used (above)")
            return
        _, dropped, symbol = codec.encode_text(prime, unknown, where="the prime")
        if dropped:                     # a bad prime fails before anything is printed
            what = "left out" if symbol is None else f"replaced by {symbol!r}"
            click.echo(f"note: {dropped} prime symbols not in the vocabulary were {what}",
                       err=True)
        say_seed()
        with _sink(output, codec.encoding) as out:
            for n, pieces in enumerate(samples(prime, [seed])):
                out.write(header(n))
                _write(out, pieces)
        if output is not None:
            click.echo(f"wrote {output}", err=True)
    except (UnknownSymbol, ValueError) as err:
        raise click.ClickException(str(err)) from None


def _write(out, pieces, line=False):
    """Stream the pieces to `out`, then end the line unless the text ended one; with `line`,
    an empty text too is a line."""
    last = "" if line else "\n"
    for piece in pieces:
        out.write(piece)
        out.flush()
        last = piece[-1:] or last
    if last != "\n":
        out.write("\n")
        out.flush()


@contextlib.contextmanager
def _sink(output, encoding):
    """stdout, or a temporary file that becomes `output` when the block ends without error."""
    if output is None:
        yield sys.stdout
        return
    from rnnkit import files

    with files.atomic(output) as tmp:
        with open(tmp, "w", encoding=encoding, errors="replace", newline="") as f:
            yield f


def _interactive(samples, codec, unknown, num_samples, seed, header, encoding):
    """A continuation for each line of standard input (bytes, decoded with `encoding`); returns
    how many primes failed. A driving program reads, for every line it writes, each sample's
    header and one text ending in a newline, an empty one for a prime that cannot be used (its
    error goes to stderr)."""
    from rnnkit.corpus.textcodec import UnknownSymbol, decode_text

    stdin, out = sys.stdin, sys.stdout
    tty = stdin.isatty()
    failed = 0
    for i in range(sys.maxsize):
        if tty:
            click.echo("> ", nl=False, err=True)
        line = stdin.buffer.readline()
        if not line:
            break
        try:
            prime = decode_text(line, codec.level, encoding, f"input line {i + 1}")
            prime = prime.rstrip(b"\r\n" if isinstance(prime, bytes) else "\r\n")
            codec.encode_text(prime, unknown, where="the prime")
        except UnknownSymbol as err:        # tell, answer with nothing, read the next prime
            click.echo(f"Error: input line {i + 1}: {err}", err=True)
            failed += 1
            prime = None
        except RnnkitError as err:          # not valid in the encoding
            click.echo(f"Error: {err}", err=True)
            failed += 1
            prime = None
        answers = [[]] * num_samples if prime is None else samples(prime, [seed, i], echo=False)
        for n, pieces in enumerate(answers):
            out.write(header(n))
            _write(out, pieces, line=True)
    if tty:
        click.echo(err=True)
    return failed
