import pytest

from emoreg.corpora import load_corpus
from emoreg.errors import EmoregError
from emoreg.evaluation.splits import make_folds


def test_group_kfold_keeps_subjects_whole_and_is_reproducible(annomi_client):
    segments = annomi_client.segments
    folds = make_folds(segments, "group-kfold", 5, seed=0)
    assert len(folds) == 5
    tested = [s for f in folds for s in f.test_subjects]
    assert sorted(tested) == sorted({s.subject_id for s in segments})  # every subject tested once
    for fold in folds:
        train, test = fold.split(segments)
        assert not {s.subject_id for s in train} & {s.subject_id for s in test}
        assert len(train) + len(test) == len(segments)
        assert {s.session_id for s in train}.isdisjoint({s.session_id for s in test})
    assert make_folds(list(reversed(segments)), "group-kfold", 5, seed=0) == folds
    assert make_folds(segments, "group-kfold", 5, seed=1) != folds


def test_loso_and_errors(toy_corpus):
    segments = load_corpus(str(toy_corpus), "deep-shame").segments
    folds = make_folds(segments, "loso", None, seed=0)
    assert [f.test_subjects for f in folds] == [(f"S{i}",) for i in range(6)]
    with pytest.raises(EmoregError, match="7 folds need at least 7 subjects, found 6"):
        make_folds(segments, "group-kfold", 7, seed=0)
    with pytest.raises(EmoregError, match="at least 2 subjects"):
        make_folds([s for s in segments if s.subject_id == "S0"], "loso", None, 0)
