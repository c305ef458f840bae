"""Smoke runs of the benchmarks on tiny inputs, so they keep working (their numbers mean nothing here)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_llm_speed_benchmarks_run(tiny_llama, annomi_data_dir):
    import llm_speed

    train = llm_speed.main(["train", "--model", tiny_llama, "--steps", "2", "--batch", "2", "--repeats", "1",
                            "--max-tokens", "64"])
    assert train["ours_tokens_per_s"][0] > 0 and train["plain_tokens_per_s"][0] > 0 and train["mfu"] > 0
    score = llm_speed.main(["score", "--model", tiny_llama, "--prompts", "3", "--max-tokens", "64"])
    assert score["prompts"] == 3 and score["speedup_p50"] > 0 and score["merged_speedup"] > 0
    head = llm_speed.main(["head", "--model", tiny_llama, "--prompts", "8", "--batch", "4", "--tune-layers", "1",
                           "--epochs", "2", "--max-tokens", "64", "--dtype", "fp32", "--tune", "full"])
    assert head["floor_s"] > 0 and head["one_epoch_over_floor"] > 0 and head["speedup_over_plain_one_epoch"] > 0
    assert head["epoch_with_whole_top_layer_s"] > 0 and head["last_token_top_layer_speedup"] > 0
    assert head["score_s"] > 0 and head["score_mfu"] > 0 and head["score_mfu_at_model_shapes"] > 0
    assert head["score_p95_ms_one_prompt"] >= head["score_p50_ms_one_prompt"] > 0
    alone = llm_speed.main(["alone", "--model", tiny_llama, "--prompts", "3", "--tune-layers", "1", "--max-tokens", "64",
                            "--dtype", "fp32", "--tune", "full"])
    assert alone["prompts"] == 3 and alone["score_p95_ms_one_prompt"] >= alone["score_p50_ms_one_prompt"] > 0
    engine = llm_speed.main(["alone", "--model", tiny_llama, "--prompts", "2", "--tune-layers", "1", "--max-tokens",
                             "64", "--dtype", "fp32", "--tune", "full", "--engine", "openvino", "--prefix-dtype", "int8"])
    assert engine["engine"] == "openvino" and engine["score_p50_ms_one_prompt"] > 0
    adamw = llm_speed.main(["adamw", "--model", tiny_llama, "--prompts", "8", "--layers", "2", "--tune-layers", "1",
                            "--tune", "full", "--dtype", "fp32", "--repeats", "1", "--max-tokens", "64"])
    assert adamw["fused_speedup"] > 0 and adamw["foreach_minor_faults"][0] >= 0
    assert np.allclose(adamw["fused_last_loss"], adamw["foreach_last_loss"], rtol=1e-3)  # the same update
    tokens = llm_speed.main(["tokens", "--model", tiny_llama, "--prompts", "12", "--batch", "4", "--max-tokens", "64"])
    assert 0 <= tokens["pad_share_states_pass"] <= tokens["pad_share_corpus_order"] < 1  # sorted pads least
    assert tokens["recipe_system_mean_tokens"] > 0 and tokens["no_system_mean_tokens"] > 0
    compiled = llm_speed.main(["compile", "--model", tiny_llama, "--prompts", "4", "--layers", "1", "--repeats", "1",
                               "--max-tokens", "64", "--dtype", "fp32"])
    assert compiled["compiled_speedup"] > 0 and compiled["one_thread_speedup"] > 0 and len(compiled["eager_s"]) == 1
    prefix = llm_speed.main(["prefix", "--model", tiny_llama, "--prompts", "4", "--layers", "2", "--repeats", "1",
                             "--dtype", "fp32"])
    assert prefix["fp32"]["speedup_vs_fp32"] == 1 and prefix["fp32"]["cosine_to_fp32_per_layer"][-1] == 1
    assert len(prefix["int8"]["cosine_to_fp32_per_layer"]) == 2 and prefix["int8"]["mfu"] > 0 and "bf16" not in prefix
    assert prefix["openvino-fp32"]["cosine_to_fp32_per_layer"][0] > 0.9999  # one layer: the tuned one's input
    assert 0.9 < prefix["openvino-int8"]["cosine_to_fp32_lowest_token"] < 1 and "openvino-bf16" not in prefix
    assert prefix["tokens_shared"] > 0 and prefix["fp32-shared"]["cosine_to_fp32_lowest_token"] > 0.9999
    # memory per variant: its model's resident size (the shared pass runs the fp32 model) and its pass's peak
    assert prefix["fp32-shared"]["model_resident_mb"] == prefix["fp32"]["model_resident_mb"]
    assert all(prefix[v]["pass_peak_mb"] >= 0 and isinstance(prefix[v]["model_resident_mb"], float)
               for v in ("fp32", "fp32-shared", "int8", "openvino-fp32", "openvino-int8"))
    some = llm_speed.main(["prefix", "--model", tiny_llama, "--prompts", "4", "--layers", "2", "--repeats", "1",
                           "--dtype", "fp32", "--variants", "openvino-fp32"])
    assert {k for k, v in some.items() if isinstance(v, dict) and "ms_per_prompt" in v} == {"fp32", "openvino-fp32"}
    static = llm_speed.main(["prefix", "--model", tiny_llama, "--prompts", "4", "--layers", "2", "--repeats", "1",
                             "--dtype", "fp32", "--variants", "openvino-w8a8", "--calibration", "8"])
    assert 0.5 < static["openvino-w8a8"]["cosine_to_fp32_lowest_token"] < 1 and static["openvino-w8a8"]["mfu"] > 0
    with pytest.raises(SystemExit, match="openvino-bf16 not available here"):
        llm_speed.main(["prefix", "--model", tiny_llama, "--prompts", "4", "--layers", "2", "--dtype", "fp32",
                        "--variants", "openvino-bf16"])


def test_random_llama_benchmark_runs():
    """The GPU check (a random 7B Llama) on the tiny shape: needs no data and no model files."""
    import llm_speed

    result = llm_speed.main(["random", "--shape", "tiny", "--steps", "3", "--batch", "2", "--max-tokens", "48",
                             "--plain"])
    assert result["runs"]["emoreg"]["timed_steps"] == 1 and result["runs"]["plain"]["timed_steps"] == 3
    assert result["mfu"] > 0 and result["ratio_all_steps"] > 0 and result["matmul_params"] > 0


def test_the_prefix_guard_runs(tiny_llama, annomi_data_dir, tmp_path):
    """benchmarks/prefix_guard.py on the tiny model: every float prefix scores the reference's way."""
    import prefix_guard

    out = prefix_guard.main(["--out", str(tmp_path / "guard"), "--set", f"params.model={tiny_llama}",
                             "--set", "params.layers=2", "--set", "params.epochs=1", "--set", "params.dtype=fp32",
                             "--set", "params.system=null", "--set", "prompt.max_tokens=64",
                             "--variants", "openvino fp32,openvino int8,torch fp32 whole"])
    variants = out["variants"]
    assert set(variants) == {"torch fp32 (reference)", "torch fp32 whole prompts", "openvino fp32", "openvino int8"}
    assert variants["torch fp32 whole prompts"]["same_decisions_as_fp32"] == 1
    assert variants["openvino fp32"]["same_decisions_as_fp32"] == 1
    assert variants["openvino fp32"]["largest_probability_change"] < 1e-3
    assert 0 <= variants["openvino int8"]["largest_probability_change"] < 1



def test_the_prompt_budget_measurement_runs(tiny_llama):
    import prompt_budget

    rows = prompt_budget.main(["--corpus", "deep-example", "--task", "deep-shame", "--tokenizer", tiny_llama,
                               "--budgets", "40", "400", "--sources", "context,history,utterance"])
    tight, loose = rows
    assert tight["segments"] == loose["segments"] > 0 and tight["task"] == "deep-shame"
    assert tight["turns_kept_counting_words"] <= loose["turns_kept_counting_words"]
    assert 0 <= tight["share_with_different_history"] <= 1 and tight["tokens_per_word"] > 0


def test_the_prefix_reuse_count_runs_and_counts_what_each_scheme_runs(tiny_llama):
    import prefix_reuse

    # the pieces, on numbers worked by hand
    assert prefix_reuse.common((1, 2, 3, 4), (1, 2, 9)) == 2 and prefix_reuse.common((1, 2), None) == 0
    assert prefix_reuse.common((1, 2, 3), (1, 2, 3)) == 2  # a prompt keeps its last token to run
    assert prefix_reuse.grouped([1, 1, 10], 1) == 30 and prefix_reuse.grouped([1, 1, 10], 2) == 12
    assert prefix_reuse.whole_pass([(1, 2), (1, 2, 3), (4,)], 2) == (2 * 2 + 1 * 3, 2)
    # two rows each walking two prompts: (5,1,2) then (5,1,2,3) reuses 3 of 4 tokens; (7,8) then (9,) none
    assert prefix_reuse.streams_pass([(5, 1, 2), (5, 1, 2, 3), (7, 8), (9,)], 2, 2) == (3 + 2 + 1 + 1, 4)
    assert prefix_reuse.streams_pass([(5, 1, 2), (5, 1, 2, 3), (7, 8), (9,)], 2, 1) == (2 * 3 + 2 * 1, 2)

    rows = prefix_reuse.main(["--corpus", "deep-example", "--task", "deep-shame", "--model", tiny_llama,
                              "--max-tokens", "60", "--batch", "4", "--groups", "1", "3"])
    got = {(r["history"], r["scheme"]): r for r in rows}
    assert set(got) == {(h, s) for h in ("sliding", "block")
                        for s in ("whole", "shared", "reuse", "streams-1", "streams-3")}
    assert got["sliding", "shared"]["fewer_than_emoreg"] == 1.0
    for history in ("sliding", "block"):
        run = {s: got[history, s]["tokens_run_a_prompt"] for s in ("whole", "shared", "reuse", "streams-1", "streams-3")}
        assert run["whole"] >= got[history, "whole"]["prompt_tokens"] > 0  # padding only adds
        assert run["shared"] <= run["whole"] and run["reuse"] < run["whole"] and run["streams-3"] <= run["streams-1"]
    # the block history never holds more context than the sliding one, which keeps the most that fits
    assert got["block", "whole"]["prompt_tokens"] <= got["sliding", "whole"]["prompt_tokens"]
