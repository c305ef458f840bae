"""Shared fixtures. AnnoMI tests need the real corpus: they use $EMOREG_DATA_DIR, else
../shared/data beside the checkout; when CI=true a missing corpus fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def _annomi_data_dir() -> Path | None:
    candidates = []
    if os.environ.get("EMOREG_DATA_DIR"):
        candidates.append(Path(os.environ["EMOREG_DATA_DIR"]))
    candidates.append(ROOT.parent / "shared" / "data")
    for folder in candidates:
        if (folder / "annomi" / "AnnoMI-simple.csv").is_file():
            return folder.resolve()
    return None


@pytest.fixture
def annomi_data_dir(monkeypatch) -> Path:
    folder = _annomi_data_dir()
    if folder is None:
        message = ("AnnoMI not found: set EMOREG_DATA_DIR to a folder with annomi/AnnoMI-simple.csv "
                   "or run `emoreg data fetch annomi`")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    monkeypatch.setenv("EMOREG_DATA_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def annomi_client():
    """The real AnnoMI client-talk corpus, loaded once per test session."""
    folder = _annomi_data_dir()
    if folder is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("AnnoMI not found and CI=true")
        pytest.skip("AnnoMI not found; set EMOREG_DATA_DIR")
    from emoreg.corpora.annomi import load_annomi

    return load_annomi(path=folder / "annomi" / "AnnoMI-simple.csv")


@pytest.fixture
def tiny_annomi() -> Path:
    return TESTS / "data" / "annomi_tiny.csv"


@pytest.fixture
def toy_corpus(tmp_path) -> Path:
    """A JSONL corpus of 6 subjects x 12 segments whose utterances reveal the label (deep-shame,
    three labels used); so do the nonverbal cues (gaze for Withdrawal, a frown for Attack Other);
    the person factor is noise."""
    import json

    words = {"Withdrawal": "quiet silent away", "Attack Other": "your fault unfair", "Rest": "fine okay sure"}
    lines = []
    for p in range(6):
        for i in range(12):
            label = list(words)[(i + p) % 3]
            lines.append(json.dumps({
                "segment_id": f"S{p}-{i:02d}", "subject_id": f"S{p}", "session_id": f"S{p}-a",
                "start_s": float(i), "end_s": i + 0.5, "label": label,
                "context": "A mock interview.",
                "transcript": [{"speaker": "Interviewer", "text": "And then?"},
                               {"speaker": "Candidate", "text": f"{words[label]} number {i}"}],
                "nonverbal": {"features": {"gaze": 0.9 if label == "Withdrawal" else 0.1 + 0.01 * i},
                              "events": [{"behaviour": "frown", "start_s": float(i), "end_s": i + 0.3}]
                              if label == "Attack Other" else []},
                "person": {"age": 20 + p},
            }))
    path = tmp_path / "toy.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def toy_split(toy_corpus):
    """Training subjects S0-S3 and test subjects S4-S5 of the toy corpus."""
    from emoreg.corpora import load_corpus

    segments = load_corpus(str(toy_corpus), "deep-shame").segments
    train = [s for s in segments if s.subject_id not in ("S4", "S5")]
    test = [s for s in segments if s.subject_id in ("S4", "S5")]
    return train, test


CHATML = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> {% endfor %}"
          "{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")


def _tiny_decoder(folder, architecture: str) -> str:
    """A 2-layer, 32-wide decoder (``llama`` or ``qwen2``: the same shape, Qwen2's attention
    projections with biases) with a word-level tokenizer and a ChatML-like template, saved to
    ``folder`` (the real loading code reads it by path)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from emoreg.corpora import load_corpus
    from emoreg.prompts import PromptConfig, render_prompt
    from emoreg.tasks import DEEP_SHAME

    words = set()
    texts = ["quiet silent away your fault unfair fine okay sure number And then ? Candidate Interviewer",
             "Answer : assistant user system You label moments of a conversation ."]
    texts += [render_prompt(s, DEEP_SHAME, PromptConfig()).text
              for s in load_corpus("deep-example").segments]
    for text in texts + list(DEEP_SHAME.labels):
        words.update(text.replace(":", " : ").replace(".", " . ").split())
    specials = ["<unk>", "<pad>", "<|im_end|>", "<|im_start|>"]
    tokens = dict.fromkeys(specials + sorted(words - set(specials)) + [str(i) for i in range(20)])
    vocab = {w: i for i, w in enumerate(tokens)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(specials)  # matched whole, before the whitespace split
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    torch.manual_seed(0)
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config_class, model_class = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                                 "gemma3": (Gemma3TextConfig, Gemma3ForCausalLM)}[architecture]
    # Gemma 3: a global layer under a local one with a window of 4 positions (their rotary bases differ)
    gemma = {"head_dim": 8, "query_pre_attn_scalar": 8, "sliding_window": 4,
             "layer_types": ["full_attention", "sliding_attention"]} if architecture == "gemma3" else {}
    config = config_class(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                          pad_token_id=1, eos_token_id=2, bos_token_id=3, tie_word_embeddings=True,
                          initializer_range=0.3, **gemma)  # large enough that the tied head can be confident
    model_class(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A 2-layer, 32-wide Llama with a word-level tokenizer and a ChatML-like template, in a folder."""
    return _tiny_decoder(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory):
    """The same as ``tiny_llama`` in Qwen2's architecture (the larger shipped model's)."""
    return _tiny_decoder(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory):
    """The same in Gemma 3's architecture (the study's second family): query/key norms, four norms a
    layer, a local layer with a sliding window over a global one."""
    return _tiny_decoder(tmp_path_factory.mktemp("tiny-gemma3"), "gemma3")


@pytest.fixture(autouse=True, scope="session")
def _state_cache(tmp_path_factory):
    """The LLM head's on-disk state cache goes to a folder of the test session, never ~/.cache."""
    os.environ["EMOREG_STATE_CACHE"] = str(tmp_path_factory.mktemp("states"))
