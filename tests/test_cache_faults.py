"""The kernel cache when it cannot be used as it is: a folder that cannot be written, a damaged
entry, a disk that fills (rnnkit/kernels/cache.py). Each a note on stderr and the right
result, never a failed run, and never Numba's fallback to __pycache__ beside the sources."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# a module with one kernel cached as rnnkit caches its own, run after rnnkit has set Numba up
USER = textwrap.dedent("""
    import sys
    import rnnkit.kernels.cache as cache
    from numba import njit

    @njit(cache=cache.CACHE)        # as rnnkit.kernels.cpu.compile.JIT
    def triple(x):
        return 3 * x

    print(cache.CACHE, triple(14))
""")


def run(tmp_path, env, code=USER):
    (tmp_path / "user.py").write_text(code)
    env = {**{k: v for k, v in os.environ.items() if k != "RNNKIT_NO_CACHE"},
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, str(tmp_path / "user.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_folder_that_cannot_be_written_turns_the_cache_off(tmp_path):
    (tmp_path / "afile").write_text("")
    result = run(tmp_path, {"NUMBA_CACHE_DIR": str(tmp_path / "afile" / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "42"]
    assert "cannot be written (Not a directory); kernels are compiled for this process only" \
        in result.stderr
    assert not list(tmp_path.glob("**/*.nbi"))          # no __pycache__ fallback beside user.py


def test_a_damaged_entry_is_compiled_again(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = run(tmp_path, env)
    assert first.returncode == 0 and first.stdout.split() == ["True", "42"], first.stderr
    entries = list((tmp_path / "cache").glob("**/user.triple-*.nbc"))
    assert len(entries) == 1
    entries[0].write_bytes(entries[0].read_bytes()[:40])     # truncated
    second = run(tmp_path, env)
    assert second.returncode == 0 and second.stdout.split() == ["True", "42"], second.stderr
    assert "a damaged entry in the kernel cache (" in second.stderr
    third = run(tmp_path, env)                                # rewritten by the second
    assert third.stdout.split() == ["True", "42"] and "note" not in third.stderr


def test_changed_machine_code_is_found_and_compiled_again(tmp_path):
    # Numba's entries have no checksum: with the constant changed in the cached machine
    # code, this printed 7654322 and exited 0
    code = USER.replace("3 * x", "x + 1234567").replace("triple(14)", "triple(1)")
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    assert run(tmp_path, env, code).stdout.split() == ["True", "1234568"]
    entry, = (tmp_path / "cache").glob("**/user.triple-*.nbc")
    raw = entry.read_bytes()
    assert raw.count((1234567).to_bytes(4, "little")) == 1
    entry.write_bytes(raw.replace((1234567).to_bytes(4, "little"),
                                  (7654321).to_bytes(4, "little")))
    second = run(tmp_path, env, code)
    assert second.returncode == 0 and second.stdout.split() == ["True", "1234568"], \
        second.stderr
    assert "a damaged entry in the kernel cache (DamagedEntry)" in second.stderr
    assert (1234567).to_bytes(4, "little") in entry.read_bytes()      # rewritten


def test_numba_cudas_cache_classes_are_protected_too():
    pytest.importorskip("numba.cuda.core.caching")
    code = ("import rnnkit.kernels.cache as c, rnnkit.kernels.cuda.launch as l\n"
            "from numba.cuda.core import caching\n"
            "print(c.CACHE, getattr(caching.Cache, '_rnnkit', False))")
    env = {k: v for k, v in os.environ.items() if k not in ("RNNKIT_NO_CACHE",
                                                            "NUMBA_ENABLE_CUDASIM")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert out.stdout.split() == ["True", "True"], out.stderr


def test_a_source_folder_it_cannot_write_in_the_cache_stays_out_of_the_sources(tmp_path):
    """Numba wants a subfolder per source folder; where it could not make it, it cached beside
    the sources instead, in __pycache__, keyed by each file alone (stale kernels after an edit
    in another module: a helper's run loaded the old sigmoid)."""
    code = USER.replace("from numba import njit", textwrap.dedent("""
        from numba import njit
        import os, numba
        from numba.core.caching import _CacheLocator
        sub = _CacheLocator.get_suitable_cache_subpath(__file__)
        open(os.path.join(numba.config.CACHE_DIR, sub), "w").close()   # a file in its place
    """))
    result = run(tmp_path, {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}, code)
    assert result.returncode == 0 and result.stdout.split() == ["True", "42"], result.stderr
    assert "part of the kernel cache cannot be written" in result.stderr
    assert not list(tmp_path.glob("__pycache__/*.nb*"))


def test_a_full_disk_leaves_the_kernel_uncached(tmp_path):
    failing = USER.replace("from numba import njit", textwrap.dedent("""
        from numba import njit
        from numba.core import caching

        def full(self, *args):
            raise OSError(28, "No space left on device")
        caching.IndexDataCacheFile._save_data = full
    """))
    result = run(tmp_path, {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}, failing)
    assert result.returncode == 0 and result.stdout.split() == ["True", "42"], result.stderr
    assert "the kernel cache cannot be written (No space left on device)" in result.stderr


def test_rnnkit_no_cache_0_keeps_the_cache(tmp_path):
    """Any value turned the cache off, 0 and false too."""
    for value, on in (("0", "True"), ("false", "True"), ("1", "False")):
        result = run(tmp_path, {"NUMBA_CACHE_DIR": str(tmp_path / "cache"),
                                "RNNKIT_NO_CACHE": value})
        assert result.stdout.split() == [on, "42"], (value, result.stderr)
