"""scripts/peer/forced_choices.py (the flavour comparison's check of the choices dsv4 took from
upstream): passes near-tie swaps of scores that agree, and fails a wrong score (a bias), a choice
that is not its engine's own top-k, a row dsv4 does not see, and a visibility mismatch."""
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "peer" / "forced_choices.py"
N_POS, N_EXP, K = 40, 8, 2


def fmt(v):
    return ",".join(str(int(i)) for i in v)


def write_case(tmp, ours_router, up_router, ours_idx, up_idx, choices, exact=False):
    """ours_*: {pos: scores}; up_*: [n_pos][n] arrays (-inf = not visible); choices: log lines."""
    with open(tmp / "inter.tsv", "w") as f:
        for p, v in ours_router.items():
            f.write(f"router_biased_scores\t2\t{p}\t{' '.join(f'{x:.9g}' for x in v)}\n")
        for p, v in ours_idx.items():
            f.write(f"indexer_scores\t1\t{p}\t{' '.join(f'{x:.9g}' for x in v)}\n")
    np.save(tmp / "up.ffn_moe_probs_biased-2.0.npy", up_router.astype(np.float32).reshape(1, 1, N_POS, N_EXP))
    np.save(tmp / "up.L1.score.npy", up_idx.astype(np.float32))
    with open(tmp / "log", "w") as f:
        f.write("loading\n")
        for kind, layer, pos, a, b in choices:
            f.write(f"force-selections\t{kind}\t{layer}\t{pos}\t{fmt(a)}\t{fmt(b)}\t0\n")
    r = subprocess.run([sys.executable, str(SCRIPT), *(["--exact"] if exact else []), "mix", str(tmp / "log"), str(tmp / "inter.tsv"), str(tmp / "up"),
                        str(tmp / "choices.md"), str(tmp / "layers.md")], capture_output=True, text=True)
    return r.returncode, (tmp / "choices.md").read_text(), (tmp / "layers.md").read_text()


def base(rng):
    """Scores that agree to ~1e-3 relative; router position 7 and indexer position 30 hold a near
    tie that the two engines break differently."""
    ours_r = rng.normal(1, 0.5, (N_POS, N_EXP))
    up_r = ours_r * (1 + 1e-3 * rng.normal(size=ours_r.shape))
    ours_r[7, :] = [2.0, 1.5001, 1.4999, 0, 0, 0, 0, 0]
    up_r[7, :] = [2.0, 1.4999, 1.5001, 0, 0, 0, 0, 0]
    n_vis = [(p + 1) // 4 for p in range(N_POS)]
    up_i = np.full((N_POS, N_POS // 4), -np.inf)
    ours_i = {}
    for p in range(N_POS):
        v = rng.normal(0, 1, n_vis[p])
        ours_i[p] = v
        up_i[p, : n_vis[p]] = v * (1 + 1e-3 * rng.normal(size=v.shape))
    # position 30 sees 7 rows; top-5: ours {0,1,2,3,5}, upstream's {0,1,2,3,6}
    ours_i[30] = np.array([7, 6, 5, 4, 1, 2.0001, 1.9999])
    up_i[30, :7] = [7, 6, 5, 4, 1, 1.9999, 2.0001]
    return {p: ours_r[p] for p in range(N_POS)}, up_r, ours_i, up_i


def choices_ok():
    return [("router", 2, 7, [0, 1], [0, 2]), ("indexer", 1, 30, [0, 1, 2, 3, 5], [0, 1, 2, 3, 6])]


def test_near_ties_of_agreeing_scores_pass(tmp_path):
    rc, ch, ly = write_case(tmp_path, *base(np.random.default_rng(1)), choices_ok())
    assert rc == 0, ch + ly
    assert ch.count("| yes |") == 2 and "NO" not in ly


def test_a_wrong_bias_fails(tmp_path):
    ours_r, up_r, ours_i, up_i = base(np.random.default_rng(2))
    up_r = up_r + np.random.default_rng(3).normal(0, 1, N_EXP)  # as if one engine lost the router bias
    rc, ch, ly = write_case(tmp_path, ours_r, up_r, ours_i, up_i, choices_ok())
    assert rc == 1
    cols = [c.strip() for c in ly.split("| mix | router | 2 |")[1].split("\n")[0].split("|")]
    assert float(cols[4]) > 1e-2 and cols[-2] == "NO"  # the layer's median score NMSE


def test_a_choice_that_is_not_the_top_k_fails(tmp_path):
    ch_bad = [("router", 2, 7, [0, 1], [0, 4])]  # expert 4 scores 0 upstream: not its top-2
    rc, ch, _ = write_case(tmp_path, *base(np.random.default_rng(4)), ch_bad)
    assert rc == 1 and "| NO |" in ch


def test_a_row_dsv4_does_not_see_fails(tmp_path):
    ch_bad = [("indexer", 1, 30, [0, 1, 2, 3, 5], [0, 1, 2, 3, 8])]  # row 8 completes at position 35
    rc, ch, _ = write_case(tmp_path, *base(np.random.default_rng(5)), ch_bad)
    assert rc == 1 and "not visible to dsv4" in ch


def test_a_visibility_mismatch_fails(tmp_path):
    ours_r, up_r, ours_i, up_i = base(np.random.default_rng(6))
    up_i[12, 3] = 0.5  # upstream sees row 3 at position 12 (complete only at 15)
    rc, _, ly = write_case(tmp_path, ours_r, up_r, ours_i, up_i, [])
    assert rc == 1
    cols = [c.strip() for c in ly.split("| mix | indexer | 1 |")[1].split("\n")[0].split("|")]
    assert cols[3] == "1" and cols[-2] == "NO"  # one visibility mismatch


def test_our_choice_that_is_not_our_top_k_fails(tmp_path):
    ch_bad = [("router", 2, 7, [0, 3], [0, 2])]  # expert 3 scores 0 on our side: not our top-2
    rc, ch, _ = write_case(tmp_path, *base(np.random.default_rng(7)), ch_bad)
    assert rc == 1 and "| NO |" in ch


def test_sets_of_different_sizes_fail(tmp_path):
    ch_bad = [("indexer", 1, 30, [0, 1, 2, 3, 5], [0, 1, 2, 3])]
    rc, ch, _ = write_case(tmp_path, *base(np.random.default_rng(8)), ch_bad)
    assert rc == 1 and "| NO |" in ch


def exact_case(rng):
    """Scores equal to 1e-9 relative; router position 7 holds an exact tie (experts 1 and 2)."""
    ours_r, up_r, ours_i, up_i = base(rng)
    for p in range(N_POS):
        up_r[p] = ours_r[p] * (1 + 1e-9 * rng.normal(size=N_EXP))
        n = len(ours_i[p])
        up_i[p, :n] = ours_i[p] * (1 + 1e-9 * rng.normal(size=n))
    ours_r[7][:] = up_r[7][:] = [2.0, 1.5, 1.5, 0, 0, 0, 0, 0]
    return ours_r, up_r, ours_i, up_i


def test_exact_path_accepts_exact_ties_only(tmp_path):
    tie = [("router", 2, 7, [0, 1], [0, 2])]
    rc, ch, ly = write_case(tmp_path, *exact_case(np.random.default_rng(9)), tie, exact=True)
    assert rc == 0, ch + ly
    assert ly.count("| yes |") == 2
    # the rounding path's near tie (margins 2e-4) is not an exact tie
    rc, ch, _ = write_case(tmp_path, *base(np.random.default_rng(10)), [choices_ok()[0]], exact=True)
    assert rc == 1 and "| NO |" in ch


def test_exact_path_fails_scores_off_by_1e_3(tmp_path):
    ours_r, up_r, ours_i, up_i = exact_case(np.random.default_rng(11))
    up_r[20, 0] += 0.01  # one position's router scores apart by NMSE ~1e-5 (the rounding path's size)
    rc, _, ly = write_case(tmp_path, ours_r, up_r, ours_i, up_i, [], exact=True)
    assert rc == 1
    cols = [c.strip() for c in ly.split("| mix | router | 2 |")[1].split("\n")[0].split("|")]
    assert float(cols[4]) < 1e-6 < float(cols[5]) and cols[-2] == "NO"  # median fine, one position not
