#!/usr/bin/env python3
"""Were the choices dsv4 took from upstream near ties? (forward-pass issue, "Flavours").

dsv4-cli --force-selections PREFIX replaces a router's experts or the indexer's rows by upstream's
where the two engines chose differently, and prints each replaced choice with the scores dsv4
chose from ("force-selections<TAB>router|indexer<TAB>layer<TAB>pos<TAB>ours<TAB>upstream's<TAB>
scores"). Upstream's scores at the same position come from its graph captures (dump_logits):
  router : PREFIX.ffn_moe_probs_biased-<il>.0.npy   (sqrt(softplus(logit)) + bias, [n_tok][n_expert])
  indexer: PREFIX.L<il>.score.npy                   (masked scores, [n_tok][n_rows])

Our own scores at every position come from dsv4-cli --dump-intermediates (router_biased_scores,
indexer_scores) of the same run.

A replaced choice is accepted (exit 0) when each engine's choice is the top-k of its own scores
over the ids that differ: our margin min(ours[only ours]) - max(ours[only upstream's]) >= 0 and
upstream's margin likewise. Then the choices differ only because the two engines' scores do, not
because either selection is wrong (a top-k that does not take the top, a different tie rule where
the scores differ, masking); margin 0 on both sides is an exact tie, broken differently (ours: the
lower id; ggml_top_k: no fixed rule). A wrong score (bias, scale) shows in the printed score
NMSE: at the position, and its median over every position of that layer. Upstream's margin is
never larger than the swapped pair's score difference (S_o[j] >= S_o[i] and S_u[i] >= S_u[j]
give (S_o-S_u)[j] - (S_o-S_u)[i] >= both margins), so the printed margins, relative to max
|upstream score|, say how near the tie was. Prints one markdown table row per choice; exits 1
when a choice is not its engine's own top-k.

  forced_choices.py MIX LOG INTERMEDIATES.tsv PREFIX
"""
import sys

import numpy as np

BOUND = 1e-3


def main():
    mix, log, inter, prefix = sys.argv[1:5]
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

    def nmse(kind, layer, pos):
        so = ours[(kind, layer)][pos]
        su = up[(kind, layer)][pos][: len(so)]
        return ((so - su) ** 2).sum() / max((su ** 2).sum(), 1e-300), so, su

    bad = 0
    for line in open(log):
        if not line.startswith("force-selections\t"):
            continue
        _, kind, layer, pos, a_s, b_s, _ = line.rstrip("\n").split("\t")
        layer, pos = int(layer), int(pos)
        a = [int(v) for v in a_s.split(",") if v]
        b = [int(v) for v in b_s.split(",") if v]
        e, so, su = nmse(kind, layer, pos)
        med = np.median([nmse(kind, layer, p)[0] for p, v in ours[(kind, layer)].items() if len(v)])
        only_o = [i for i in a if i not in b]
        only_u = [i for i in b if i not in a]
        m_o = min(so[only_o]) - max(so[only_u])
        m_u = min(su[only_u]) - max(su[only_o])
        scale = np.abs(su).max()
        ok = m_o >= 0 and m_u >= 0
        bad += not ok
        print(f"| {mix} | {kind} | {layer} | {pos} | {a_s} | {b_s} | {m_u / scale:.2e} | {m_o / scale:.2e} | "
              f"{e:.2e} | {med:.2e} | {'yes' if ok else 'NO'} |")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
