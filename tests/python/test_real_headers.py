"""Model-files acceptance "real headers, not invented ones": for each GGUF flavour people run, a
full-size sparse GGUF built from the public header facts (../shared/data/real-headers, by
scripts/real_headers/make_sparse.py: real metadata and tensor table, data section a hole) is
accepted by `dsv4-gguf-info --validate` without reading tensor data."""
import gzip
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FACTS = ROOT.parent / "shared" / "data" / "real-headers"
FLAVOURS = {
    "upstream-mxfp4": 1328,
    "unsloth-UD-IQ3_XXS": 1328,
    "unsloth-UD-IQ2_XXS": 1328,
    "ds4-q2": 1328,
    "ds4-q4": 1328,
    "ds4-mtp": 32,
    "nsparks-fp4-fp8": 1328,
}


@pytest.fixture(scope="module")
def sparse_dir(tmp_path_factory):
    assert FACTS.is_dir(), f"the public header facts are expected at {FACTS}"
    out = tmp_path_factory.mktemp("sparse")
    specs = tmp_path_factory.mktemp("specs")
    subprocess.run([sys.executable, str(ROOT / "scripts/real_headers/make_sparse.py"),
                    "--facts", str(FACTS), "--out", str(out), "--spec-dir", str(specs)],
                   check=True, capture_output=True, timeout=300)
    # the committed specs are what the generator produces (deterministic)
    for spec in specs.iterdir():
        committed = ROOT / "tests/fixtures/real-headers" / spec.name
        assert gzip.decompress(committed.read_bytes()) == gzip.decompress(spec.read_bytes()), \
            f"{committed} is stale: rerun make_sparse.py"
    return out


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_sparse_real_header_validates(bin_dir, sparse_dir, flavour):
    files = sorted((sparse_dir / flavour).glob("*.gguf"))
    assert files, flavour
    first = files[0]
    # full apparent size (the data section is a hole): every flavour is gigabytes
    assert sum(f.stat().st_size for f in files) > 3_000_000_000
    p = subprocess.run([str(bin_dir / "dsv4-gguf-info"), "--validate", "--header-only", str(first)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"{FLAVOURS[flavour]} tensors" in p.stdout, p.stdout
    if len(files) > 1:  # split sets: every shard opens the whole set
        assert f"{len(files)} shard(s)" in p.stdout
