"""dsv4-cli --force-selections (the flavour comparison's "choices taken alike" run,
scripts/peer/flavour-logits.sh): a recorded router choice that differs from ours replaces it at
that position only and is printed with the scores we chose from; recorded choices equal to ours
change nothing; malformed files are refused with the file named."""
import subprocess

import numpy as np
import pytest

IDS = "5,17,40,99,3,250,77,12,61,8,140,33"


def run_cli(bin_dir, model, tmp_path, name, *extra):
    out = tmp_path / f"{name}.npy"
    tsv = tmp_path / f"{name}.tsv"
    r = subprocess.run([str(bin_dir / "dsv4-cli"), "-m", str(model), "--ids", IDS, "-n", "0", "--all-logits",
                        "--dump-logits", str(out), "--dump-intermediates", str(tsv), "-t", "1", *extra],
                       capture_output=True, text=True, timeout=300)
    return r, out, tsv


def router(tsv):
    """{(layer, pos): (experts, biased scores)} of the score-routed layers."""
    exp, sc = {}, {}
    for line in open(tsv):
        name, layer, pos, vals = line.rstrip("\n").split("\t")
        if name == "router_experts":
            exp[(int(layer), int(pos))] = [int(float(v)) for v in vals.split()]
        elif name == "router_biased_scores":
            sc[(int(layer), int(pos))] = np.array(vals.split(), dtype=np.float64)
    return {k: (exp[k], sc[k]) for k in sc}


@pytest.fixture(scope="module")
def model(bin_dir, fixtures_dir, tmp_path_factory):
    f = tmp_path_factory.mktemp("force") / "tiny.gguf"
    subprocess.run([str(bin_dir / "dsv4-mkmodel"), "-o", str(f), "--tokenizer", str(fixtures_dir / "tokenizer.json"),
                    "--preset", "tiny", "--mix", "f32"], check=True, capture_output=True, timeout=300)
    return f


def test_forced_router_choice(bin_dir, model, tmp_path):
    r, free_npy, free_tsv = run_cli(bin_dir, model, tmp_path, "free")
    assert r.returncode == 0, r.stderr
    rt = router(free_tsv)
    layer = min(l for l, _ in rt)
    n_tok = len(IDS.split(","))
    k = len(rt[(layer, 0)][0])
    rec = np.array([rt[(layer, p)][0] for p in range(n_tok)], dtype=np.int32)
    # recorded = ours everywhere: nothing is replaced, the logits are bit-identical
    np.save(tmp_path / f"same.L{layer}.experts.npy", rec)
    r, same_npy, _ = run_cli(bin_dir, model, tmp_path, "same", "--force-selections", str(tmp_path / "same"))
    assert r.returncode == 0, r.stderr
    assert "force-selections\t" not in r.stderr
    assert np.array_equal(np.load(same_npy), np.load(free_npy))
    # position 6 routed through the k lowest-scored experts instead
    at = 6
    scores = rt[(layer, at)][1]
    worst = [int(e) for e in np.argsort(scores, kind="stable")[:k]]
    rec[at] = worst
    np.save(tmp_path / f"other.L{layer}.experts.npy", rec)
    r, other_npy, other_tsv = run_cli(bin_dir, model, tmp_path, "other", "--force-selections", str(tmp_path / "other"))
    assert r.returncode == 0, r.stderr
    lines = [l.split("\t") for l in r.stderr.splitlines() if l.startswith("force-selections\t")]
    assert len(lines) == 1, r.stderr
    _, kind, l, p, ours, theirs, sc = lines[0]
    assert (kind, int(l), int(p)) == ("router", layer, at)
    assert [int(v) for v in ours.split(",")] == rt[(layer, at)][0]
    assert [int(v) for v in theirs.split(",")] == worst
    assert np.allclose(np.array(sc.split(","), dtype=np.float64), scores, rtol=1e-7)
    assert router(other_tsv)[(layer, at)][0] == worst
    a, b = np.load(free_npy), np.load(other_npy)
    assert np.array_equal(a[:at], b[:at])  # earlier positions untouched
    assert not np.array_equal(a[at], b[at])


@pytest.mark.parametrize("bad,why", [
    (np.zeros((12, 5), np.int32), "want int32/int64"),          # wrong width (n_expert_used)
    (np.zeros((12, 2), np.float32), "want int32/int64"),        # not integers
    (np.full((12, 2), 99, np.int32), "out of range"),           # no such expert
    (np.zeros((12, 2), np.int32), "repeats an expert"),         # the same expert twice
])
def test_bad_files_are_refused(bin_dir, model, tmp_path, bad, why):
    np.save(tmp_path / "bad.L2.experts.npy", bad)
    r, _, _ = run_cli(bin_dir, model, tmp_path, "bad", "--force-selections", str(tmp_path / "bad"))
    assert r.returncode != 0
    assert why in r.stderr and "bad.L2.experts.npy" in r.stderr, r.stderr


def test_no_files_is_an_error(bin_dir, model, tmp_path):
    r, _, _ = run_cli(bin_dir, model, tmp_path, "none", "--force-selections", str(tmp_path / "nothing"))
    assert r.returncode != 0
    assert "no " in r.stderr and "nothing.L<il>" in r.stderr, r.stderr


def indexer_rows(tsv, layer):
    """{pos: selected row ids} of a CSA layer (--dump-intermediates indexer_topk)."""
    r = {}
    for line in open(tsv):
        name, l, pos, vals = line.rstrip("\n").split("\t")
        if name == "indexer_topk" and int(l) == layer:
            r[int(pos)] = [int(float(v)) for v in vals.split()]
    return r


def test_forced_indexer_rows(bin_dir, model, tmp_path):
    r, free_npy, free_tsv = run_cli(bin_dir, model, tmp_path, "free")
    assert r.returncode == 0, r.stderr
    layer = 1  # the tiny preset's first CSA layer (compress ratios 0, 4, 128, 4)
    sel = indexer_rows(free_tsv, layer)
    n_tok = len(IDS.split(","))
    at = n_tok - 1  # sees (at + 1) // 4 = 3 compressed rows, all selected (top-k 8)
    assert sorted(sel[at]) == [0, 1, 2]
    rec = np.full((n_tok, 8), -1, np.int32)
    for p, v in sel.items():
        rec[p, : len(v)] = v
    rec[at, :3] = [2, 0, -1]  # recorded: rows 2 and 0 only
    np.save(tmp_path / f"idx.L{layer}.topk.npy", rec)
    r, idx_npy, idx_tsv = run_cli(bin_dir, model, tmp_path, "idx", "--force-selections", str(tmp_path / "idx"))
    assert r.returncode == 0, r.stderr
    lines = [l.split("\t") for l in r.stderr.splitlines() if l.startswith("force-selections\t")]
    assert [(k, int(l), int(p), t) for _, k, l, p, _, t, _ in lines] == [("indexer", layer, at, "2,0")], r.stderr
    assert len(lines[0][6].split(",")) == 3  # the scores of the 3 visible rows
    assert sorted(indexer_rows(idx_tsv, layer)[at]) == [0, 2]
    a, b = np.load(free_npy), np.load(idx_npy)
    assert np.array_equal(a[:at], b[:at]) and not np.array_equal(a[at], b[at])
    # a recorded row we do not see yet (row 5 completes at position 23) is printed, not taken
    rec[at, :4] = [0, 1, 2, 5]
    np.save(tmp_path / f"inv.L{layer}.topk.npy", rec)
    r, inv_npy, _ = run_cli(bin_dir, model, tmp_path, "inv", "--force-selections", str(tmp_path / "inv"))
    assert r.returncode == 0, r.stderr
    lines = [l.split("\t") for l in r.stderr.splitlines() if l.startswith("force-selections\t")]
    assert len(lines) == 1 and lines[0][5] == "0,1,2,5", r.stderr
    assert np.array_equal(np.load(inv_npy), a)


def test_repeated_indexer_row_is_refused(bin_dir, model, tmp_path):
    bad = np.full((12, 8), -1, np.int32)
    bad[11, :2] = [1, 1]
    np.save(tmp_path / "rep.L1.topk.npy", bad)
    r, _, _ = run_cli(bin_dir, model, tmp_path, "rep", "--force-selections", str(tmp_path / "rep"))
    assert r.returncode != 0
    assert "rep.L1.topk.npy" in r.stderr and "repeats a row id" in r.stderr, r.stderr
