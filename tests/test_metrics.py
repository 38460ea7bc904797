import pytest
import torch

from cddpm import labels as L
from cddpm.evaluation import metrics as M


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


def course_compute_acc(out: torch.Tensor, onehot_labels: torch.Tensor) -> float:
    """The course's evaluator.compute_acc, verbatim."""
    batch_size = out.size(0)
    acc = 0
    total = 0
    for i in range(batch_size):
        k = int(onehot_labels[i].sum().item())
        total += k
        outv, outi = out[i].topk(k)
        lv, li = onehot_labels[i].topk(k)
        for j in outi:
            if j in li:
                acc += 1
    return acc / total


def test_ties_follow_torch_topk_as_the_course_does():
    one = L.encode_batch([["red cube"]])
    flat = torch.full((1, 24), 0.5)
    assert M.topk_accuracy(flat, one) == course_compute_acc(flat, one)
    two = L.encode_batch([["red cube", "blue cube"]])
    tied = scored({"red cube": 1.0, "blue cube": 1.0, "gray sphere": 1.0})  # a saturated sigmoid: three at 1.0
    assert M.topk_accuracy(tied, two) == course_compute_acc(tied, two)
    assert M.topk_credit(tied, two)[0, L.INDEX["gray sphere"]] == 0  # unrequested: no credit


def test_an_image_requesting_nothing_is_skipped_as_in_the_course():
    labels = torch.cat([L.encode_batch([["red cube"]]), torch.zeros(1, 24)])
    scores = scored({"red cube": 0.9}, {"blue cube": 0.9})
    assert M.topk_accuracy(scores, labels) == course_compute_acc(scores, labels) == 1.0
    with pytest.raises(ValueError, match="no image requests an object"):
        M.topk_accuracy(scores, torch.zeros(2, 24))


@pytest.mark.parametrize("kind", ["random", "tied", "saturated"])
def test_equals_the_course_compute_acc_to_the_last_digit(kind):
    gen = torch.Generator().manual_seed(0)
    labels = L.encode_batch([[L.CLASSES[j] for j in torch.randperm(24, generator=gen)[: 1 + i % 3].tolist()]
                             for i in range(300)])
    logits = torch.randn(300, 24, generator=gen) + 1.5 * (2 * labels - 1)
    if kind == "tied":
        logits = (logits * 2).round() / 2  # few distinct values: many ties at the k-th place
    if kind == "saturated":
        logits = logits * 20  # float32 sigmoid returns exactly 1.0 above a logit of about 17
    scores = torch.sigmoid(logits)
    if kind != "random":
        assert (scores.sort(1, descending=True).values[:, :4].diff(dim=1) == 0).any()  # ties do occur
    assert M.topk_accuracy(scores, labels) == course_compute_acc(scores, labels)


@pytest.mark.parametrize("scores, labels, match", [
    (torch.rand(2, 24), torch.zeros(3, 24), "same shape"),
    (torch.rand(2, 10), torch.zeros(2, 10), "same shape"),
    (torch.rand(2, 24), L.encode_batch([["red cube"]]).repeat(2, 1) * 0.7, "multi-hot"),
])
def test_bad_input_one_line_errors(scores, labels, match):
    for metric in (M.topk_accuracy, M.exact_set_accuracy, M.extra_object_rate):
        with pytest.raises(ValueError, match=match) as err:
            metric(scores, labels)
        assert "\n" not in str(err.value)


def test_set_metrics_refuse_an_image_requesting_nothing():
    scores, labels = torch.rand(2, 24), torch.cat([L.encode_batch([["red cube"]]), torch.zeros(1, 24)])
    for metric in (M.exact_set_accuracy, M.extra_object_rate):
        with pytest.raises(ValueError, match="request no object") as err:
            metric(scores, labels)
        assert "\n" not in str(err.value)
