"""Facial behaviour from per-frame tool output: OpenFace 2 FeatureExtraction and py-feat CSVs.

Frames inside a segment's time window become numeric features (mean and max AU intensity, share
of frames with an AU present, gaze-aversion share, head pitch) and behaviour events with start
and end (a smile, gaze away for more than a threshold, head down), by the rules of a YAML table
(``emoreg/data/openface_rules.yaml``; a copy can be named in the import config). Frames with low
confidence or ``success = 0`` are skipped and counted, never silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import EmoregError
from ..segments import Event, Nonverbal
from . import read_table

OPENFACE_COLUMNS = ("frame", "timestamp", "confidence", "success")


def load_rules(path: str | Path | None = None) -> dict[str, Any]:
    from ..yamlio import parse_yaml, read_yaml

    rules = (read_yaml(path, "face rules") if path is not None
             else parse_yaml((resources.files("emoreg") / "data" / "openface_rules.yaml").read_text(), "openface_rules.yaml"))
    if not isinstance(rules, dict):
        raise EmoregError(f"face rules {path}: expected a mapping (min_confidence, features, events, ...)")
    events = rules.get("events", {})
    if not isinstance(events, dict):
        raise EmoregError(f"face rules {path}: events must be a mapping of event name to rule")
    for name, rule in events.items():
        if not isinstance(rule, dict):
            raise EmoregError(f"face rule {name!r} must be a mapping with column, above or below, min_duration_s")
        if "column" not in rule or ("above" in rule) == ("below" in rule) or "min_duration_s" not in rule:
            raise EmoregError(f"face rule {name!r} needs column, one of above/below, and min_duration_s; got {rule}")
    return rules


def _check_frames(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in OPENFACE_COLUMNS if c not in df.columns]
    if missing:
        raise EmoregError(f"{path}: missing column(s) {', '.join(missing)}; an OpenFace FeatureExtraction CSV "
                          f"has {', '.join(OPENFACE_COLUMNS)}, gaze_angle_x/y, pose_R*, AUxx_r, AUxx_c")
    for column in df.columns:  # every OpenFace column is a number; text in one is an error, not a NaN
        if not pd.api.types.is_numeric_dtype(df[column]):
            numbers = pd.to_numeric(df[column], errors="coerce")
            text = numbers.isna() & df[column].notna()
            if text.any():
                at = int(np.flatnonzero(text.to_numpy())[0])
                raise EmoregError(f"{path}: column {column} holds text ({df[column].iloc[at]!r} at CSV line {at + 2}, "
                                  f"{int(text.sum())} cell(s) in all); face tracks are numbers: fix or drop those cells")
            df[column] = numbers
    success = df["success"].dropna()
    if not success.isin([0, 1]).all():
        odd = success[~success.isin([0, 1])]
        raise EmoregError(f"{path}: success must be 0 or 1 (OpenFace's face-found flag), found {odd.iloc[0]!r} at CSV "
                          f"line {int(odd.index[0]) + 2}")
    infinite = ~np.isfinite(df["timestamp"].fillna(0).to_numpy(dtype=float))
    if infinite.any():
        at = int(np.flatnonzero(infinite)[0])
        raise EmoregError(f"{path}: timestamp {df['timestamp'].iloc[at]} at CSV line {at + 2} is not a finite number of "
                          "seconds; fix or drop that row")
    bad = df[list(OPENFACE_COLUMNS)].isna().any(axis=1)
    if bad.any():
        lines = ", ".join(str(i + 2) for i in np.flatnonzero(bad.to_numpy())[:5])
        raise EmoregError(f"{path}: {int(bad.sum())} frame(s) with an empty frame/timestamp/confidence/success "
                          f"value (CSV lines {lines}); fix or drop those rows")
    backwards = np.flatnonzero(np.diff(df["timestamp"].to_numpy(dtype=float)) < 0)
    if len(backwards):
        line = int(backwards[0]) + 3
        raise EmoregError(f"{path}: timestamps go backwards at CSV line {line} "
                          f"({df['timestamp'].iloc[backwards[0]]} -> {df['timestamp'].iloc[backwards[0] + 1]}); "
                          "frames must be in time order")
    return df.reset_index(drop=True)


def read_openface(path: str | Path) -> pd.DataFrame:
    """An OpenFace 2 FeatureExtraction CSV (its headers carry leading spaces; they are stripped)."""
    path = Path(path)
    df = read_table(path, "OpenFace CSV", skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    return _check_frames(df, path)


def read_pyfeat(path: str | Path, fps: float) -> pd.DataFrame:
    """A py-feat detector result CSV, mapped onto OpenFace's columns: ``frame / fps`` is the
    timestamp, ``FaceScore`` the confidence (a frame without a face has success 0), ``AUxx`` (0-1)
    the intensity ``AUxx_r`` and ``AUxx >= 0.5`` the presence ``AUxx_c``, ``Pitch`` (degrees) the
    head pitch ``pose_Rx`` (radians)."""
    path = Path(path)
    raw = read_table(path, "py-feat CSV")
    missing = [c for c in ("frame", "FaceScore") if c not in raw.columns]
    if missing:
        raise EmoregError(f"{path}: missing column(s) {', '.join(missing)} of a py-feat result CSV")
    if not fps or fps <= 0:
        raise EmoregError(f"{path}: py-feat frames need the video's frame rate (face.fps > 0)")
    df = pd.DataFrame({"frame": raw["frame"], "timestamp": raw["frame"] / fps,
                       "confidence": raw["FaceScore"].fillna(0.0), "success": raw["FaceScore"].notna().astype(int)})
    for column in raw.columns:
        if column.startswith("AU") and column[2:].isdigit():
            df[f"{column}_r"] = raw[column]
            df[f"{column}_c"] = (raw[column] >= 0.5).astype(float)
    if "Pitch" in raw.columns:
        df["pose_Rx"] = np.radians(raw["Pitch"])
    return _check_frames(df, path)


@dataclass
class FaceTrack:
    """The kept frames of one recording, its events, and what was skipped."""

    frames: pd.DataFrame
    events: list[Event]
    skipped: int
    rules: dict[str, Any]
    used: set[int] = field(default_factory=set)  # indices of frames that fell in some window

    @classmethod
    def build(cls, frames: pd.DataFrame, rules: dict[str, Any]) -> FaceTrack:
        keep = (frames["success"] == 1) & (frames["confidence"] >= rules.get("min_confidence", 0.0))
        kept = frames[keep].reset_index(drop=True)
        if {"gaze_angle_x", "gaze_angle_y"} <= set(kept.columns):
            kept["gaze_offset"] = np.sqrt(kept["gaze_angle_x"] ** 2 + kept["gaze_angle_y"] ** 2)
        return cls(kept, detect_events(kept, rules), int((~keep).sum()), rules)

    def nonverbal(self, start: float, end: float) -> Nonverbal | None:
        """Features and events of the window [start, end)."""
        t = self.frames["timestamp"].to_numpy(dtype=float)
        inside = np.flatnonzero((t >= start) & (t < end))
        self.used.update(inside.tolist())
        features: dict[str, float] = {}
        if len(inside) and self.rules.get("features", True):
            window = self.frames.iloc[inside]
            for column in window.columns:
                if column.startswith("AU") and column.endswith("_r"):
                    features[f"{column[:-2]}_mean"] = float(window[column].mean())
                    features[f"{column[:-2]}_max"] = float(window[column].max())
                elif column.startswith("AU") and column.endswith("_c"):
                    features[f"{column[:-2]}_share"] = float((window[column] >= 1).mean())
            gaze = self.rules.get("events", {}).get("gaze_away")
            if gaze and gaze["column"] in window.columns:
                features["gaze_away_share"] = float(_condition(window, gaze).mean())
            if "pose_Rx" in window.columns:
                features["head_pitch_mean"] = float(window["pose_Rx"].mean())
        events = [Event(e.behaviour, max(e.start_s, start), min(e.end_s, end), e.intensity)
                  for e in self.events if e.start_s < end and e.end_s > start]
        features = {k: v for k, v in features.items() if math.isfinite(v)}
        return Nonverbal(tuple(events), features) if (events or features) else None


def _condition(frames: pd.DataFrame, rule: dict[str, Any]) -> np.ndarray:
    values = frames[rule["column"]].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        return values >= rule["above"] if "above" in rule else values <= rule["below"]


def detect_events(frames: pd.DataFrame, rules: dict[str, Any]) -> list[Event]:
    """Runs of frames meeting each event rule, gaps up to ``max_gap_s`` bridged, at least
    ``min_duration_s`` long. Intensity: the mean of the AU's ``_r`` column during the run, if any."""
    if frames.empty:
        return []
    t = frames["timestamp"].to_numpy(dtype=float)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
    gap = rules.get("max_gap_s", 0.0)
    events = []
    for name, rule in rules.get("events", {}).items():
        if rule["column"] not in frames.columns:
            continue
        hits = np.flatnonzero(_condition(frames, rule))
        runs: list[list[int]] = []
        for i in hits:
            if runs and t[i] - t[runs[-1][-1]] <= step + gap + 1e-9:
                runs[-1].append(i)
            else:
                runs.append([i])
        intensity_column = rule["column"][:-2] + "_r" if rule["column"].endswith("_c") else None
        for run in runs:
            start, end = t[run[0]], t[run[-1]] + step
            if end - start >= rule["min_duration_s"] - 1e-9:
                intensity = None
                if intensity_column in frames.columns:
                    intensity = round(float(frames[intensity_column].iloc[run].mean()), 3)
                events.append(Event(name, round(start, 3), round(end, 3), intensity))
    return sorted(events, key=lambda e: (e.start_s, e.behaviour))
