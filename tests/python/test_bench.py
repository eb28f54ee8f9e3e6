"""dsv4-bench on a tiny synthetic model: the llama-bench-style rows it promises (issue 7, scope 1),
the read probe around each tg repetition (--bw-probe-mb), and clear errors for bad options.
Speeds are not checked (no timed assertions); what is checked is the bookkeeping: one sample per
repetition, GB/s = t/s x bytes per token, the probe fraction = GB/s / probe GB/s per repetition."""
import csv
import io
import json
import subprocess

import pytest

from test_mkmodel import mkmodel


@pytest.fixture(scope="module")
def tiny(bin_dir, fixtures_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.gguf"
    mkmodel(bin_dir, out, fixtures_dir / "tokenizer.json", "upstream")
    return out


def bench(bin_dir, *args, check=True):
    p = subprocess.run([str(bin_dir / "dsv4-bench"), *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_json_rows_and_probe(bin_dir, tiny):
    p = bench(bin_dir, "-m", tiny, "-p", "8", "-n", "4", "-d", "0,6", "-r", "3", "-t", "2",
              "-o", "json", "--stream-mb", "4", "--stream-reps", "1", "--bw-probe-mb", "4")
    j = json.loads(p.stdout)
    assert j["bw_probe_bytes"] == 4 << 20
    assert j["stream"]["read_gbs"] > 0
    tests = [r["test"] for r in j["results"]]
    assert tests == ["pp8", "tg4", "pp8 @ d6", "tg4 @ d6"]
    for r in j["results"]:
        assert len(r["samples_ts"]) == 3 and all(t > 0 for t in r["samples_ts"])
        if r["n_gen"] == 0:
            assert "probe_read_gbs" not in r and "avg_gbs" not in r
            continue
        assert len(r["probe_read_gbs"]) == 3 and all(g > 0 for g in r["probe_read_gbs"])
        bpt = r["bytes_per_token"]
        assert bpt == pytest.approx(r["active_bytes_per_token"] + r["state_bytes_per_token"])
        for ts, g, f in zip(r["samples_ts"], r["probe_read_gbs"], r["probe_fraction"]):
            assert f == pytest.approx(ts * bpt / 1e9 / g, rel=1e-9)
        assert r["avg_probe_fraction"] == pytest.approx(sum(r["probe_fraction"]) / 3, rel=1e-9)
    # the state grows with depth: a tg at depth 6 reads more state per token than at depth 0
    tg = {r["n_depth"]: r for r in j["results"] if r["n_gen"] > 0}
    assert tg[6]["state_bytes_per_token"] > tg[0]["state_bytes_per_token"]


def test_probe_off_and_markdown(bin_dir, tiny):
    j = json.loads(bench(bin_dir, "-m", tiny, "-p", "0", "-n", "2", "-r", "1", "-o", "json", "--no-stream",
                         "--bw-probe-mb", "0").stdout)
    assert "bw_probe_bytes" not in j
    assert "probe_read_gbs" not in j["results"][0]
    md = bench(bin_dir, "-m", tiny, "-p", "0", "-n", "2", "-r", "1", "--no-stream", "--bw-probe-mb", "2").stdout
    assert "| % of read around |" in md
    row = next(line for line in md.splitlines() if "| tg2 |" in line)
    assert row.rstrip().endswith("GB/s |") and "% of " in row.split("|")[-2]
    out = bench(bin_dir, "-m", tiny, "-p", "0", "-n", "2", "-r", "1", "-o", "csv", "--no-stream",
                "--bw-probe-mb", "2").stdout
    head, row = list(csv.reader(io.StringIO(out)))
    assert head[-2:] == ["avg_probe_read_gbs", "avg_probe_fraction"]
    assert len(row) == len(head) and float(row[-2]) > 0 and float(row[-1]) > 0


@pytest.mark.parametrize("args,needle", [
    (["-p", "0", "-n", "0"], "no test"),
    (["-n", "x"], "-n: bad value 'x'"),
    (["-d", "-1"], "-d: bad value '-1'"),
])
def test_bad_options(bin_dir, tiny, args, needle):
    p = bench(bin_dir, "-m", tiny, "--no-stream", *args, check=False)
    assert p.returncode != 0
    assert needle in p.stderr


def test_missing_file(bin_dir, tmp_path):
    p = bench(bin_dir, "-m", tmp_path / "nope.gguf", "-p", "0", "-n", "1", "--no-stream", check=False)
    assert p.returncode != 0
    assert "nope.gguf" in p.stderr


def test_worker_protocol(bin_dir, tiny):
    """--worker (bench/pair-bench.py): ready, then one answer line per command; restore before each
    run; bad commands and runs past n_ctx end it with an error line."""
    p = subprocess.Popen([str(bin_dir / "dsv4-bench"), "--worker", "-m", str(tiny), "-t", "2", "-p", "4", "-n", "3",
                          "-d", "0,6"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    out, err = p.communicate("depth 6\ntg 3\ntg 3\npp 4\ndepth 0\ntg 2\ntg 5\n", timeout=300)
    lines = out.splitlines()
    assert lines[0] == "ready", err
    assert [ln.split()[:2] for ln in lines[1:6]] == [["depth", "6"], ["tg", "3"], ["tg", "3"], ["pp", "4"],
                                                     ["depth", "0"]]
    assert all(float(ln.split()[2]) >= 0 for ln in lines[1:6])
    assert lines[6].split()[:2] == ["tg", "2"]
    # n_ctx = max depth 6 + max(4, 3) + 1 = 11: pp 4 at depth 6 just fits, and so does tg 5 at depth 0
    assert lines[7].split()[:2] == ["tg", "5"] and p.returncode == 0
    p = subprocess.run([str(bin_dir / "dsv4-bench"), "--worker", "-m", str(tiny), "-t", "1", "-p", "0", "-n", "2"],
                       input="tg 20\n", capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "needs n_ctx" in p.stdout
    p = subprocess.run([str(bin_dir / "dsv4-bench"), "--worker", "-m", str(tiny), "-t", "1", "-p", "0", "-n", "2"],
                       input="fly 3\n", capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "bad command 'fly 3'" in p.stdout
    p = subprocess.run([str(bin_dir / "dsv4-bench"), "--worker", "-m", str(tiny), "-t", "1,2", "-n", "2"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode != 0 and "--worker takes one -m and one -t" in p.stderr
