"""Write an official-format DeepSeek-V4 checkpoint directory for a tiny config.

    python -m dsv4ref.checkpoint --config tiny --out DIR
    python -m dsv4ref.checkpoint --config tiny-quant --real-vocab-from /path/tokenizer.json --out DIR

DIR receives:
  config.json             HF-format config (keys of the real checkpoint's root config.json)
  inference_config.json   the same model in official ModelArgs keys (inference/config.json style)
  model.safetensors       official tensor names and dtypes (dsv4-architecture.md §3.2)
  tokenizer.json, tokenizer_config.json   toy 512-entry vocab, or copies of the real ones
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil

from safetensors.torch import save_file

from . import configs, vocab, weights


def write_checkpoint(cfg_name: str, out, real_vocab_from=None, seed=None) -> dict:
    if real_vocab_from and not pathlib.Path(real_vocab_from).is_file():
        raise SystemExit(f"--real-vocab-from: no such file {real_vocab_from}")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    a = configs.get(cfg_name, vocab_size=configs.REAL_VOCAB_SIZE if real_vocab_from else None)
    if seed is not None:
        a["seed"] = int(seed)
    ts = weights.make_weights(a)
    save_file(weights.stored_dict(ts), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)
    hf = configs.hf_config(a)
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    (out / "inference_config.json").write_text(json.dumps(configs.official_args(a), indent=2) + "\n")
    if real_vocab_from:
        src = pathlib.Path(real_vocab_from)
        shutil.copyfile(src, out / "tokenizer.json")
        tc = src.parent / "tokenizer_config.json"
        if tc.exists():
            shutil.copyfile(tc, out / "tokenizer_config.json")
    else:
        vocab.write(out)
    return a


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, choices=sorted(configs.CONFIGS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--real-vocab-from", default=None,
                    help="real DeepSeek-V4 tokenizer.json; sets vocab_size 129280 and copies it "
                         "(and a sibling tokenizer_config.json) into --out")
    ap.add_argument("--seed", default=None, type=int, help="override the config's weight seed")
    args = ap.parse_args(argv)
    a = write_checkpoint(args.config, args.out, args.real_vocab_from, args.seed)
    print(f"wrote {args.out}: config {a['name']} vocab {a['vocab_size']} seed {a['seed']}")


if __name__ == "__main__":
    main()
