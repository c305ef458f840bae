"""Prompts: golden files for two fixture segments, sources, budget. Regenerate the golden files
after an intended template change with UPDATE_GOLDEN=1 and read the diff."""

import os
import re
from pathlib import Path

import pytest

from emoreg.corpora.annomi import load_annomi
from emoreg.corpora.deep import load_example
from emoreg.errors import EmoregError
from emoreg.prompts import PromptConfig, approx_token_count, parse_sources, render_prompt
from emoreg.segments import Nonverbal, Segment, Turn
from emoreg.tasks import ANNOMI_CLIENT_TALK, DEEP_SHAME

GOLDEN = Path(__file__).parent / "golden"


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"prompt differs from {path}; UPDATE_GOLDEN=1 if intended"


def test_golden_deep_example_all_sources():
    segment = load_example().segments[6]  # P02-m02, all five sources
    check_golden("deep_P02-m02.txt", render_prompt(segment, DEEP_SHAME).text)


def test_golden_annomi_client_turn(tiny_annomi):
    corpus = load_annomi(path=tiny_annomi)
    segment = next(s for s in corpus.segments if s.segment_id == "annomi-t000-u003")
    check_golden("annomi_t000-u003.txt", render_prompt(segment, ANNOMI_CLIENT_TALK).text)


def _segment(n_turns=6):
    turns = tuple(Turn("A" if i % 2 else "B", f"turn number {i} " + "word " * 10, float(i))
                  for i in range(n_turns))
    return Segment("s", "p", "x", label="Rest", context="An interview.", transcript=turns,
                   nonverbal=Nonverbal(features={"au12_mean": 0.2, "gaze_away_share": 0.7}),
                   person={"age": 30, "smoker": True})


def test_sources_are_chosen_and_missing_ones_left_out():
    seg = _segment()
    prompt = render_prompt(seg, DEEP_SHAME, PromptConfig(sources=("utterance", "introspection")))
    assert prompt.sources == ("utterance",)  # no introspection in this segment: not invented
    assert "Latest utterance (A): turn number 5" in prompt.text
    assert "turn number 4" not in prompt.text and "afterwards" not in prompt.text
    full = render_prompt(seg, DEEP_SHAME, PromptConfig(sources="all"))
    assert full.sources == ("context", "person", "history", "utterance", "nonverbal")
    assert "About the person: age: 30; smoker: yes." in full.text


def test_parse_sources_expands_transcript_and_orders():
    assert parse_sources("transcript,context") == ("context", "history", "utterance")
    with pytest.raises(EmoregError, match="unknown source 'video'"):
        parse_sources("video")


def test_feature_thresholds_and_behaviour_phrases():
    seg = _segment()
    config = PromptConfig(sources=("nonverbal",), feature_thresholds={"au12_mean": 0.5, "gaze_away_share": 0.5})
    assert "Nonverbal behaviour: gaze away share is high (0.7)." in render_prompt(seg, DEEP_SHAME, config).text
    quiet = PromptConfig(sources=("nonverbal",), feature_thresholds={"au12_mean": 0.5, "gaze_away_share": 0.9})
    assert "Nonverbal" not in render_prompt(seg, DEEP_SHAME, quiet).text


def test_budget_drops_oldest_turns_first_and_keeps_the_utterance():
    seg = _segment(n_turns=30)
    unbounded = render_prompt(seg, DEEP_SHAME, PromptConfig(max_tokens=None))
    budget = unbounded.n_tokens - 40
    prompt = render_prompt(seg, DEEP_SHAME, PromptConfig(max_tokens=budget))
    assert prompt.n_tokens <= budget and not prompt.over_budget
    assert prompt.dropped_turns >= 1
    # the fewest turns were dropped: one fewer would not fit
    assert f"turn number {prompt.dropped_turns} " in prompt.text
    assert f"turn number {prompt.dropped_turns - 1} " not in prompt.text
    assert f"({prompt.dropped_turns} earlier turns left out)" in prompt.text
    assert "Latest utterance (A): turn number 29" in prompt.text
    from emoreg.prompts import _render

    one_fewer = _render(seg, DEEP_SHAME, PromptConfig(max_tokens=budget), prompt.dropped_turns - 1)[0]
    assert approx_token_count(one_fewer) > budget  # keeping one more turn would not have fit


def test_over_budget_keeps_the_utterance_and_says_so():
    seg = _segment(n_turns=5)
    prompt = render_prompt(seg, DEEP_SHAME, PromptConfig(max_tokens=20))
    assert prompt.over_budget and prompt.dropped_turns == 4
    assert "Latest utterance (B): turn number 4" in prompt.text


def test_a_real_tokenizer_counter_can_be_passed():
    seg = _segment(n_turns=10)
    def count_chars(text):
        return len(text)
    prompt = render_prompt(seg, DEEP_SHAME, PromptConfig(max_tokens=1600), count_tokens=count_chars)
    assert prompt.n_tokens == len(prompt.text) <= 1600 and prompt.dropped_turns > 0
    assert approx_token_count("Hello, world!") == 4


@pytest.mark.parametrize("n_turns", [2, 3, 7, 30, 64])
def test_the_budget_search_drops_exactly_the_fewest_turns(n_turns):
    """Against a brute-force scan over every number of dropped turns, for budgets from 'nothing
    fits' to 'everything fits'."""
    seg = _segment(n_turns=n_turns)
    unbounded = render_prompt(seg, DEEP_SHAME, PromptConfig(max_tokens=None)).n_tokens
    for budget in range(16, unbounded + 5, max(1, unbounded // 25)):
        config = PromptConfig(max_tokens=budget)
        got = render_prompt(seg, DEEP_SHAME, config)
        fits = [d for d in range(n_turns) if _tokens_with_dropped(seg, config, d) <= budget]
        expected = min(fits) if fits else n_turns - 1
        assert got.dropped_turns == expected, (budget, got.dropped_turns, expected)
        assert got.over_budget == (not fits)


def _tokens_with_dropped(seg, config, dropped):
    from emoreg.prompts import _render

    return approx_token_count(_render(seg, DEEP_SHAME, config, dropped)[0])


def test_the_budget_search_reads_what_fits_not_the_whole_history():
    """A live session's history grows without end; building its prompt must not count it all."""
    counted = []

    def count(text):
        counted.append(len(text))
        return approx_token_count(text)

    short = render_prompt(_segment(n_turns=40), DEEP_SHAME, PromptConfig(max_tokens=400), count_tokens=count)
    assert short.dropped_turns > 0 and not short.over_budget
    short_cost, counted[:] = sum(counted), []
    long = render_prompt(_segment(n_turns=4000), DEEP_SHAME, PromptConfig(max_tokens=400), count_tokens=count)
    assert long.n_tokens <= 400 and not long.over_budget and long.dropped_turns > 3900
    assert sum(counted) < 2 * short_cost  # 100x the history, under 2x the text counted


def test_golden_annomi_compact_template_at_the_llm_budget(tiny_annomi):
    """The prompt the LLM recipes use: compact template, topic + history + utterance, 96 tokens."""
    corpus = load_annomi(path=tiny_annomi)
    segment = next(s for s in corpus.segments if s.segment_id == "annomi-t000-u003")
    config = PromptConfig(sources=("context", "history", "utterance"), max_tokens=96, template="emoreg-v1-compact")
    check_golden("annomi_t000-u003_compact.txt", render_prompt(segment, ANNOMI_CLIENT_TALK, config).text)


def test_golden_chat_wrapped_model_input(tiny_annomi, tiny_llama):
    """What the LLM is fed: the prompt inside the chat template with the system message, as the
    model's tokenizer spells it (the tiny Llama's ChatML-like template)."""
    from emoreg.models import make_model

    corpus = load_annomi(path=tiny_annomi)
    segment = next(s for s in corpus.segments if s.segment_id == "annomi-t000-u003")
    model = make_model("llm", ANNOMI_CLIENT_TALK, PromptConfig(sources=("context", "history", "utterance"),
                       max_tokens=96, template="emoreg-v1-compact"), 0, {"model": tiny_llama, "head": "lm", "dtype": "fp32"})
    model._setup()
    model._load()
    check_golden("annomi_t000-u003_chat.txt", model.tokenizer_.decode(model._prefix_ids(segment)))


@pytest.mark.parametrize("fields, message", [
    ({"feature_thresholds": {"speech_rate_wps": "abc"}}, "feature_thresholds.speech_rate_wps must be a finite number"),
    ({"feature_thresholds": {"gaze": float("nan")}}, "feature_thresholds.gaze must be a finite number, got nan"),
    ({"max_tokens": float("nan")}, "max_tokens must be a whole number of tokens"),
    ({"max_tokens": 96.5}, "max_tokens must be a whole number of tokens"),
    ({"behaviour_phrases": {"gaze_away": 3}}, "behaviour_phrases.gaze_away must be the words that describe it"),
])
def test_prompt_settings_of_the_wrong_kind_are_refused(fields, message):
    from emoreg.errors import EmoregError

    with pytest.raises(EmoregError, match=re.escape(message)):
        PromptConfig(**fields)


def test_a_bad_threshold_on_the_command_line_fails_before_a_run_folder_exists(tmp_path, toy_corpus):
    from emoreg.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{text: utterance}}\n")
    code = main(["evaluate", str(config), "--out", str(tmp_path / "run"),
                 "--set", "prompt.feature_thresholds={speech_rate_wps: abc}"])
    assert code == 2 and not (tmp_path / "run").exists()


def test_what_the_budget_counts(tiny_llama, tmp_path):
    """``count``: model (each model its own tokens; words where a model has no tokenizer), words,
    or one tokenizer for every model; a folder with no tokenizer is an error in words."""
    from transformers import AutoTokenizer

    from emoreg.models.base import prompt_counter

    def own(text):
        return 7

    assert prompt_counter(PromptConfig(), own=own) is own
    assert prompt_counter(PromptConfig()) is approx_token_count
    assert prompt_counter(PromptConfig(count="words"), own=own) is approx_token_count
    text = "Well ... I guess?! Maybe"
    shared = prompt_counter(PromptConfig(count=tiny_llama), own=own)
    assert shared(text) == len(AutoTokenizer.from_pretrained(tiny_llama)(text, add_special_tokens=False).input_ids) == 6
    assert approx_token_count(text) == 9  # words and each punctuation mark
    with pytest.raises(EmoregError, match="prompt count .*: no tokenizer loads from it"):
        prompt_counter(PromptConfig(count=str(tmp_path)))("x")
    with pytest.raises(EmoregError, match="count .* must be model, words, or a tokenizer"):
        PromptConfig(count="")


@pytest.mark.parametrize("count, ok", [("model", True), ("words", True), ("smollm2-135m", True), ("org/model", True),
                                       ("wrods", False), ("smollm2", False)])
def test_a_count_that_names_nothing_fails_before_a_run_folder_exists(tmp_path, toy_corpus, capsys, count, ok):
    from emoreg.cli import main
    from emoreg.evaluation.config import load_config

    config = tmp_path / "c.yaml"
    config.write_text(f"corpus: {toy_corpus}\ntask: deep-shame\nmodel: tfidf\nparams: {{text: utterance}}\n"
                      f"prompt: {{count: {count}}}\n")
    if ok:
        assert load_config(config).prompt["count"] == count
        return
    assert main(["evaluate", str(config), "--out", str(tmp_path / "run")]) == 2 and not (tmp_path / "run").exists()
    assert "prompt.count: expected model, words, a short model name (smollm2-135m" in capsys.readouterr().err


def test_one_count_gives_every_model_the_same_history(tiny_llama, monkeypatch):
    """Under ``count: words`` (or one tokenizer) an LLM and TF-IDF on the prompt keep the same history
    for one budget; under ``count: model`` they do not, when the LLM's tokenizer counts otherwise."""
    import emoreg.models.base as base
    import emoreg.models.llm.tokens as tokens
    from emoreg.models import make_model

    turns = tuple(Turn("A" if i % 2 else "B", f"turn {i} ... well ... fine ...", float(i)) for i in range(30))
    segment = Segment("s", "p", "x", label="Rest", context="An interview.", transcript=turns)
    kept = {}
    for module, who in ((base, "tfidf"), (tokens, "llm")):
        def spy(*args, _who=who, _render=module.render_prompt, **kwargs):
            prompt = _render(*args, **kwargs)
            kept[_who] = prompt.dropped_turns
            return prompt
        monkeypatch.setattr(module, "render_prompt", spy)
    dropped = {}
    for count in ("model", "words", tiny_llama):
        config = PromptConfig(sources=("context", "history", "utterance"), max_tokens=400, count=count)
        make_model("tfidf", DEEP_SHAME, config, 0, {"text": "prompt"})._texts([segment], "prompt")
        llm = make_model("llm", DEEP_SHAME, config, 0, {"model": tiny_llama, "head": "lm", "dtype": "fp32"})
        llm._setup()
        llm._load()
        llm._prefix_ids(segment)
        dropped[count] = dict(kept)
    assert dropped["model"]["llm"] < dropped["model"]["tfidf"]  # "..." is one token to the LLM, three words
    assert dropped["words"]["llm"] == dropped["words"]["tfidf"] == dropped["model"]["tfidf"]
    assert dropped[tiny_llama]["llm"] == dropped[tiny_llama]["tfidf"] == dropped["model"]["llm"]
