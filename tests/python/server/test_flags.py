"""Command line: llama-server flags accepted, unknown flags rejected clearly."""
import subprocess

from conftest import TOKENIZER, canary


def test_llama_server_command_line_accepted(start_server):
    s = start_server("-c", "512", "-np", "2", "-t", "2", "-tb", "2", "-b", "64", "-ub", "32", "-ngl", "999",
                     "-ot", "exps=CPU", "-ot", "foo=CPU", "--jinja", "--timeout", "30", "--alias", "deepseek-v4",
                     "--reasoning-format", "deepseek", "--reasoning-budget", "-1", "--chat-template-kwargs",
                     '{"thinking": true}', "--host", "127.0.0.1", "--metrics", "--cors", "*")
    assert [m.id for m in s.client().models.list().data] == ["deepseek-v4"]
    canary(s)
    import requests
    r = requests.get(s.url + "/health", headers={"Origin": "http://e"})
    assert r.headers.get("Access-Control-Allow-Origin") == "*"
    assert "ignored" in s.log_text()


def test_unknown_flag_rejected(scripted_exe):
    p = subprocess.run([str(scripted_exe), "--tokenizer", str(TOKENIZER), "--no-such-flag"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0 and "--no-such-flag" in (p.stderr + p.stdout)
    p = subprocess.run([str(scripted_exe), "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    for flag in ["--ctx-size", "--parallel", "--threads-batch", "--ubatch-size", "--n-gpu-layers", "--override-tensor",
                 "--api-key", "--metrics", "--timeout", "--chat-template-kwargs", "--reasoning-format",
                 "--reasoning-budget", "--alias", "--cors"]:
        assert flag in p.stdout


def test_reasoning_defaults_from_flags(start_server):
    s = start_server("-c", "256", "--chat-template-kwargs", '{"thinking": false}')
    prompt = s.post("/apply-template", {"messages": [{"role": "user", "content": "x"}]}).json()["prompt"]
    assert prompt.endswith("</think>")
    s2 = start_server("-c", "256", "--reasoning-format", "none")
    from conftest import script
    r = s2.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, headers=script("r</think>a"))
    assert r.json()["choices"][0]["message"]["content"] == "<think>r</think>a"
