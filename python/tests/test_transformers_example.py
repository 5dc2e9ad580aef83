"""Smoke test of the transformers prefill example on the CPU (its small default run)."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("longattn")

from longattn.examples import hf_prefill  # noqa: E402


def test_hf_prefill_cpu(tmp_path, capsys):
    out = tmp_path / "prefill.json"
    # flex_attention is left out: compiling it on the CPU takes about a minute.
    rc = hf_prefill.main(["--device", "cpu", "--tokens", "512", "--layers", "2",
                          "--impls", "longattn,sdpa", "--json", str(out),
                          "--plot", str(tmp_path / "prefill.png")])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["model"] == "gemma4" and result["layers"] == 2
    assert any("d 512" in g for g in result["geometry"])  # the global layers' head dim
    assert result["logits_check"]["longattn"] < 1e-4
    assert [(r["impl"], r["tokens"], r["ok"]) for r in result["runs"]] == [
        ("longattn", 512, True), ("sdpa", 512, True)]
    assert "longattn" in capsys.readouterr().out


def test_attention_bytes_are_the_peak_over_no_attention():
    def run(impl, tokens, peak, ok=True):
        return {"impl": impl, "tokens": tokens, "ok": ok, "peak_bytes": peak}

    runs = [run("longattn", 8, 100), run("sdpa", 8, 400), run("no_attention", 8, 100),
            run("sdpa", 16, None, ok=False), run("longattn", 16, 300), run("flex", 32, 5)]
    hf_prefill.add_attention_bytes(runs)
    assert [r["attention_bytes"] for r in runs] == [0, 300, 0, None, None, None]
