#!/usr/bin/env python3
"""Were the choices dsv4 took from upstream near ties of scores that agree? (forward-pass issue,
"Flavours").

dsv4-cli --force-selections PREFIX replaces a router's experts or the indexer's rows by upstream's
where the two engines chose differently, and prints each such choice with the scores dsv4 chose
from ("force-selections<TAB>router|indexer<TAB>layer<TAB>pos<TAB>ours<TAB>upstream's<TAB>scores").
dsv4's scores at every position come from dsv4-cli --dump-intermediates of the same run
(router_biased_scores, indexer_scores); upstream's from its graph captures (dump_logits):
  router : PREFIX.ffn_moe_probs_biased-<il>.0.npy   (sqrt(softplus(logit)) + bias, [n_tok][n_expert])
  indexer: PREFIX.L<il>.score.npy                   (masked scores, [n_tok][n_rows], -inf = not visible)

Checks (exit 1 when one fails):
  per layer (every position, replaced or not):
    - visibility: upstream sees as many candidates as dsv4 at every position (router: n_expert;
      indexer: the compressed rows complete at that position);
    - the scores agree. --exact (both engines exact: the F32 path, nothing rounded to 8 bits):
      every position's score-row NMSE <= 1e-6 (the issue's bound for exact comparisons; observed
      <= 5.4e-8). Otherwise (8-bit rounding path) the median over positions of the score-row NMSE
      is <= 1e-3 for routers (observed <= 2.3e-5) and <= 1e-2 for the indexer (observed
      <= 1.5e-3: its scores, sum_h w_h ReLU(q_h.k), cancel between heads of opposite weight, so
      they disagree a few times more than the logits, and up to O(1) at single positions where
      they nearly cancel); half the router bias gives 9.8e-2 .. 3.5e-1.
  per replaced choice:
    - every id upstream chose is one dsv4 sees, and the two sets have the same size;
    - each engine's choice is the top-k of its own scores over the ids that differ (our margin
      min(ours[only ours]) - max(ours[only upstream's]) >= 0, upstream's likewise): the choices
      differ because the scores do, not because a selection is wrong. Margin 0 on both sides is
      an exact tie broken differently (dsv4: the lower id; ggml_top_k: no fixed rule);
    - --exact: it is an exact tie (both margins 0).
Upstream's margin is never larger than the swapped pair's score difference (S_o[j] >= S_o[i] and
S_u[i] >= S_u[j] give (S_o-S_u)[j] - (S_o-S_u)[i] >= both margins): a replaced choice is a tie
within the engines' score differences at that position. The printed margins (relative to max
|upstream score|) say how near.

  forced_choices.py [--exact] MIX LOG INTERMEDIATES.tsv PREFIX CHOICES.md LAYERS.md
appends one markdown row per replaced choice to CHOICES.md and one per (choice kind, layer) to
LAYERS.md.
"""
import sys

import numpy as np

EXACT_BOUND = 1e-6                              # every position, --exact
MEDIAN_BOUND = {"router": 1e-3, "indexer": 1e-2}  # median over positions, 8-bit rounding path


def nmse(a, b):
    return ((a - b) ** 2).sum() / max((b ** 2).sum(), 1e-300)


def main():
    args = sys.argv[1:]
    exact = args[0] == "--exact"
    mix, log, inter, prefix, choices_md, layers_md = args[1:7] if exact else args[:6]
    ours = {}  # (kind, layer) -> {pos: scores}
    names = {"router_biased_scores": "router", "indexer_scores": "indexer"}
    for line in open(inter):
        name, layer, pos, vals = line.rstrip("\n").split("\t")
        if name in names:
            ours.setdefault((names[name], int(layer)), {})[int(pos)] = np.array(vals.split(), dtype=np.float64)
    up = {}
    for kind, layer in ours:
        path = (f"{prefix}.ffn_moe_probs_biased-{layer}.0.npy" if kind == "router" else f"{prefix}.L{layer}.score.npy")
        x = np.load(path).astype(np.float64)
        up[(kind, layer)] = x.reshape(-1, x.shape[-1])

    bad = 0
    replaced = {}  # (kind, layer) -> [count, exact ties]
    with open(choices_md, "a") as out:
        for line in open(log):
            if not line.startswith("force-selections\t"):
                continue
            _, kind, layer, pos, a_s, b_s, _ = line.rstrip("\n").split("\t")
            layer, pos = int(layer), int(pos)
            a = [int(v) for v in a_s.split(",") if v]
            b = [int(v) for v in b_s.split(",") if v]
            so = ours[(kind, layer)][pos]
            su = up[(kind, layer)][pos][: len(so)]
            only_o = [i for i in a if i not in b]
            only_u = [i for i in b if i not in a]
            visible = all(i < len(so) for i in b)
            if visible and only_o and only_u and len(a) == len(b):
                m_o = min(so[only_o]) - max(so[only_u])
                m_u = min(su[only_u]) - max(su[only_o])
            else:  # an invisible id, or sets of different sizes: not a swap of candidates
                m_o = m_u = -np.inf
            ok = visible and m_o >= 0 and m_u >= 0 and (not exact or (m_o == 0 and m_u == 0))
            bad += not ok
            r = replaced.setdefault((kind, layer), [0, 0])
            r[0] += 1
            r[1] += m_o == 0 and m_u == 0
            scale = np.abs(su).max()
            out.write(f"| {mix} | {kind} | {layer} | {pos} | {a_s} | {b_s} | {m_u / scale:.2e} | {m_o / scale:.2e} | "
                      f"{nmse(so, su):.2e} | {'yes' if ok else 'NO' + ('' if visible else ' (not visible to dsv4)')} |\n")
            if not ok:
                print(f"{mix}: {kind} L{layer} pos {pos}: ours {a_s}, upstream's {b_s}: not accepted", file=sys.stderr)
    with open(layers_md, "a") as out:
        for (kind, layer), rows in sorted(ours.items()):
            u = up[(kind, layer)]
            e, mismatch = [], 0
            for pos, so in rows.items():
                n_vis = int(np.isfinite(u[pos]).sum())
                if n_vis != len(so):
                    mismatch += 1
                    continue
                if len(so):
                    e.append(nmse(so, u[pos][: len(so)]))
            med = float(np.median(e)) if e else 0.0
            worst = max(e) if e else 0.0
            ok = mismatch == 0 and (worst <= EXACT_BOUND if exact else med <= MEDIAN_BOUND[kind])
            if not ok:
                print(f"{mix}: {kind} L{layer}: {mismatch} visibility mismatches, score NMSE median {med:.2e} max "
                      f"{worst:.2e}: not accepted", file=sys.stderr)
            bad += not ok
            n, ties = replaced.get((kind, layer), [0, 0])
            out.write(f"| {mix} | {kind} | {layer} | {len(rows)} | {n} | {ties} | {mismatch} | {med:.2e} | "
                      f"{worst:.2e} | {'yes' if ok else 'NO'} |\n")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
