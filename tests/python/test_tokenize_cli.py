"""dsv4-tokenize --render against the official encoder's goldens (tests/fixtures/chat), and the
revision default from the model file (logged on stderr)."""
import gzip
import json
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def goldens():
    with gzip.open(ROOT / "tests/fixtures/chat/goldens.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_render_matches_official_goldens(bin_dir, tmp_path):
    # the CLI's request form: thinking flag + encoder-level effort passed through unchanged ("high"
    # and "max" mean the same in dsv4's alias table for both revisions)
    cases = [g for g in goldens() if g["kind"] == "render" and g["drop_thinking"] and not g["vllm_additions"]
             and g["reasoning_effort"] in (None, "high", "max")]
    assert len(cases) >= 20
    for g in cases:
        req = {"messages": g["messages"], "thinking": g["thinking"]}
        if g["reasoning_effort"]:
            req["reasoning_effort"] = g["reasoning_effort"]
        f = tmp_path / "chat.json"
        f.write_text(json.dumps(req, ensure_ascii=False), encoding="utf-8")
        p = subprocess.run([str(bin_dir / "dsv4-tokenize"), "--render", str(f), "--revision", g["revision"]],
                           capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stdout.decode("utf-8") == g["rendered"], g["id"]


def test_revision_defaults_from_model_file(bin_dir, tmp_path):
    f = tmp_path / "chat.json"
    f.write_text(json.dumps([{"role": "user", "content": "hi"}]), encoding="utf-8")
    tok = ROOT / "tests/fixtures/tokenizer.json"
    named = tmp_path / "DeepSeek-V4-Flash-0731-tokenizer.json"
    named.write_bytes(tok.read_bytes())
    for path, want in ((tok, "preview"), (named, "0731")):
        p = subprocess.run([str(bin_dir / "dsv4-tokenize"), "--render", str(f), "-t", str(path), "--ids-only"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert f"chat format revision: {want} (from the model file)" in p.stderr
        assert p.stdout.split()[0] == "0"  # BOS written by the renderer, found as an added token
