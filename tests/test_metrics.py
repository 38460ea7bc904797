import math

import pytest
import torch

from cddpm import labels as L
from cddpm import metrics as M


def scored(*rows: dict[str, float]) -> torch.Tensor:
    """(N, 24) scores: 0.01 everywhere except the named classes."""
    out = torch.full((len(rows), L.NUM_CLASSES), 0.01)
    for i, row in enumerate(rows):
        for name, value in row.items():
            out[i, L.INDEX[name]] = value
    return out


def course_topk(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The course's evaluator.compute_acc loop, verbatim in spirit."""
    acc = total = 0
    for i in range(scores.size(0)):
        k = int(labels[i].sum().item())
        total += k
        _, outi = scores[i].topk(k)
        _, li = labels[i].topk(k)
        acc += sum(int(j in li) for j in outi)
    return acc / total


def test_perfect_scores():
    labels = L.encode_batch([["red cube"], ["blue sphere", "cyan cube"]])
    scores = scored({"red cube": 0.9}, {"blue sphere": 0.8, "cyan cube": 0.7})
    assert M.topk_accuracy(scores, labels) == 1.0
    assert M.exact_set_accuracy(scores, labels) == 1.0
    assert M.extra_object_rate(scores, labels) == 0.0


def test_extra_object_passes_topk_but_fails_exact_set():
    labels = L.encode_batch([["red cube"]])
    scores = scored({"red cube": 0.95, "yellow cylinder": 0.9})
    assert M.topk_accuracy(scores, labels) == 1.0
    assert M.exact_set_accuracy(scores, labels) == 0.0
    assert M.extra_object_rate(scores, labels) == 1.0


def test_missing_object_and_strict_threshold():
    labels = L.encode_batch([["red cube", "gray sphere"], ["green cylinder"]])
    scores = scored({"red cube": 0.9, "gray sphere": 0.5}, {"green cylinder": 0.51})
    assert M.exact_set_accuracy(scores, labels) == 0.5  # 0.5 is not above 0.5
    assert M.exact_set_accuracy(scores, labels, threshold=0.4) == 1.0
    assert M.extra_object_rate(scores, labels) == 0.0


def test_topk_is_pooled_over_objects_not_averaged_over_images():
    labels = L.encode_batch([["red cube"], ["blue cube", "green cube", "cyan cube"]])
    scores = scored({"red cube": 0.9}, {"blue cube": 0.9, "gray cube": 0.8, "gray sphere": 0.7, "green cube": 0.1})
    assert M.topk_accuracy(scores, labels) == pytest.approx(2 / 4)  # per-image mean would be 2/3


def test_ties_share_the_remaining_places():
    one = L.encode_batch([["red cube"]])
    assert M.topk_accuracy(torch.full((1, 24), 0.5), one) == pytest.approx(1 / 24)
    two = L.encode_batch([["red cube", "blue cube"]])
    tied = scored({"red cube": 0.9, "blue cube": 0.6, "gray sphere": 0.6})
    assert M.topk_accuracy(tied, two) == pytest.approx(0.75)
    credit = M.topk_credit(tied, two)[0]
    assert credit[L.INDEX["blue cube"]] == 0.5 and credit[L.INDEX["gray sphere"]] == 0  # unrequested: no credit
    # the rule does not depend on class order: swapping the tied columns changes nothing
    perm = torch.arange(24)
    perm[L.INDEX["blue cube"]], perm[L.INDEX["gray sphere"]] = L.INDEX["gray sphere"], L.INDEX["blue cube"]
    assert M.topk_accuracy(tied[:, perm], two[:, perm]) == pytest.approx(0.75)


def test_matches_the_course_loop_without_ties():
    gen = torch.Generator().manual_seed(0)
    labels = L.encode_batch([[L.CLASSES[j] for j in torch.randperm(24, generator=gen)[: 1 + i % 3].tolist()]
                             for i in range(200)])
    for sharp in (0.0, 1.5):  # random scores and scores that mostly agree with the labels
        scores = torch.sigmoid(torch.randn(200, 24, generator=gen) + sharp * (2 * labels - 1))
        assert M.topk_accuracy(scores, labels) == pytest.approx(course_topk(scores, labels))
    assert 0.5 < course_topk(scores, labels) < 1.0  # the sharp case is neither trivial nor perfect


def test_per_class_recall():
    labels = L.encode_batch([["red cube"], ["red cube", "blue cube"], ["blue cube"]])
    scores = scored({"red cube": 0.9}, {"red cube": 0.1, "blue cube": 0.9, "gray cube": 0.8}, {"blue cube": 0.9})
    recall = M.per_class_recall(scores, labels)
    assert recall.shape == (24,)
    assert recall[L.INDEX["red cube"]] == 0.5 and recall[L.INDEX["blue cube"]] == 1.0
    assert math.isnan(recall[L.INDEX["gray cube"]])  # never requested
    counts = labels.sum(0)
    pooled = (recall.nan_to_num() * counts).sum() / counts.sum()
    assert pooled.item() == pytest.approx(M.topk_accuracy(scores, labels))


@pytest.mark.parametrize("scores, labels, match", [
    (torch.rand(2, 24), torch.zeros(3, 24), "same shape"),
    (torch.rand(2, 10), torch.zeros(2, 10), "same shape"),
    (torch.rand(2, 24), L.encode_batch([["red cube"]]).repeat(2, 1) * 0.7, "multi-hot"),
    (torch.rand(2, 24), torch.cat([L.encode_batch([["red cube"]]), torch.zeros(1, 24)]), "request no object"),
])
def test_bad_input_one_line_errors(scores, labels, match):
    for metric in (M.topk_accuracy, M.exact_set_accuracy, M.extra_object_rate, M.per_class_recall):
        with pytest.raises(ValueError, match=match) as err:
            metric(scores, labels)
        assert "\n" not in str(err.value)
