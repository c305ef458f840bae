"""``head: classify`` (the default of ``model: llm``): the label head read from a middle layer of
the model, one or a few top layers tuned, the states below them cached (``head``, ``states``); at
several depths averaged (``layers: ensemble``) or one chosen inside each fold (``layers: auto``,
``auto_depth``). Shares the loader, settings and saved-folder frame of ``model.LlmClassifier``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ... import distributed
from ...errors import EmoregError
from .model import LlmClassifier


class HeadLlm(LlmClassifier, head="classify"):
    """``model: llm`` with ``head: classify``."""

    def _setup(self) -> None:
        super()._setup()
        if distributed.world_size() > 1:
            raise EmoregError("llm: head classify trains in one process; run it without --processes")

    def _build(self, base, adapter: Path | None):
        if isinstance(self.settings.head.layers, int):  # auto / ensemble: each depth's own model truncates
            from .cut import truncate

            truncate(base, self.settings.head.layers)
        if self.settings.head.tune == "full":
            return base  # no adapter: the tuned layers' own weights are trained
        return self._with_lora(base, adapter)

    # ------------------------------------------------------------------ training
    def _fit(self, segments, y):
        if self.settings.head.layers == "ensemble":
            from .auto_depth import fit_depths

            self.members_ = fit_depths(self, segments)
            return None
        if self.settings.head.layers == "auto":
            from .auto_depth import fit_auto

            final = fit_auto(self, segments, y)
            for key, value in vars(final).items():  # the chosen cell's learned state becomes this model's
                if key.endswith("_") and key not in ("labels_", "fit_subjects_"):
                    setattr(self, key, value)
            return None
        return super()._fit(segments, y)

    def _train(self, segments, y: np.ndarray) -> None:
        from .head import fit_head

        fit_head(self, self._encode(segments), y)

    # ------------------------------------------------------------------ prediction
    def _predict_proba(self, segments):
        if hasattr(self, "members_"):  # layers ensemble: the depths' probabilities averaged
            # the deepest first: its states pass keeps the shallower depths' states (state_layers), so
            # new prompts cost one pass, not one per depth; averaged in the members' order
            scored = [m._predict_proba(segments) for m in reversed(self.members_)][::-1]
            # each depth's own probabilities, kept for the fold metadata (``emoreg report --members``:
            # the depth sweep from the same fits)
            self.member_proba_ = {_member_name(m): p for m, p in zip(self.members_, scored)}
            return np.mean(scored, axis=0)
        return super()._predict_proba(segments)

    def _predict_prefixes(self, prefixes: list[list[int]]) -> np.ndarray:
        from .head import predict_head

        return predict_head(self, prefixes)

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        if hasattr(self, "members_"):  # layers ensemble
            members = {_member_name(m): m.describe() for m in self.members_}
            first = next(iter(members.values()))
            return {"head": "classify", "layers": "ensemble", "dtype": first.get("dtype"), "bf16": first.get("bf16"),
                    "processes": first.get("processes"),
                    # each depth keeps its own curve (``emoreg report --members`` draws it); the run's is their mean
                    "loss": _mean_loss([m.get("loss") or [] for m in members.values()]), "loss_of": "mean over depths",
                    "depths": [m.settings.head.layers for m in self.members_], "members": members,
                    "member_proba": {k: np.round(v, 6).tolist() for k, v in getattr(self, "member_proba_", {}).items()}}
        return super().describe() | self._head_facts()

    def _head_facts(self) -> dict[str, Any]:
        """Where tuning starts, and what the state cache saved."""
        report = self.fit_report
        choice = report.depth_choice
        return {"head": "classify", "layers": choice["chosen_layers"] if choice else self.settings.head.layers,
                "prefix_dtype": self.settings.model.prefix_dtype,
                "prefix_engine": self.settings.model.prefix_engine,
                **({"depth_choice": choice} if choice else {}),
                "first_tuned_layer": getattr(self, "first_tuned_", None),
                "states_computed": report.states_computed, "states_reused": report.states_reused,
                "states_tokens": report.states_tokens, "states_tokens_shared": report.states_tokens_shared,
                "states_seconds": report.states_seconds, "train_seconds": report.train_seconds,
                **({"mix_weights": [round(float(w), 4) for w in self.mix_.detach().softmax(0)]}
                   if getattr(self, "mix_", None) is not None else {})}

    def _save(self, folder: Path) -> None:
        if hasattr(self, "members_"):  # layers ensemble: each depth's model in a folder of its own
            for member in self.members_:
                member.save(folder / f"depth-{member.settings.head.layers:02d}")
            self._write_spec(folder, depths=[m.settings.head.layers for m in self.members_])
            return
        from .head import save_head

        save_head(self, folder)
        if self.settings.head.tune != "full":
            self.model_.save_pretrained(str(folder / "adapter"))  # standard PEFT format
        choice = self.fit_report.depth_choice
        self._write_fitted_spec(folder, **({"depth_choice": choice} if choice else {}))

    def fitted_params(self) -> dict[str, Any]:
        """The parameters that rebuild this fitted model: with layers auto, the chosen depth and epochs."""
        choice = self.fit_report.depth_choice
        if choice is None:
            return dict(self.params)
        from .auto_depth import AUTO_ONLY

        return {k: v for k, v in self.params.items() if k not in AUTO_ONLY} | {
            "layers": choice["chosen_layers"], "epochs": choice["chosen_epochs"]}

    def _restore(self, folder: Path, spec: dict[str, Any]) -> None:
        if "depths" in spec:  # layers ensemble
            self.members_ = [type(self).load(folder / f"depth-{d:02d}") for d in spec["depths"]]
            self.labels_ = tuple(spec["labels"])
            return
        super()._restore(folder, spec)

    def _restore_weights(self, folder: Path) -> None:
        from .head import load_head

        load_head(self, folder)


def _mean_loss(curves: list[list[dict]]) -> list[dict]:
    """The depths' training losses averaged step by step (they train on the same prompts in the same
    batches, so their steps match; a depth resumed from an older checkpoint may lack early steps:
    the steps every depth logged)."""
    steps = set.intersection(*({h["step"] for h in c} for c in curves)) if curves else set()
    by_step = [{h["step"]: h for h in c} for c in curves]
    return [{"step": step, "loss": float(np.mean([c[step]["loss"] for c in by_step]))} for step in sorted(steps)]


def _member_name(member: LlmClassifier) -> str:
    """How a depth of ``layers: ensemble`` is named in the fold metadata and the report."""
    return f"layers {member.settings.head.layers}"
