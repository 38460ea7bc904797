import pytest
import torch

from cddpm import labels as L


def test_official_order():
    assert L.CLASSES[0] == "gray cube" and L.CLASSES[9] == "red sphere" and L.CLASSES[23] == "yellow cylinder"
    for s, shape in enumerate(L.SHAPES):
        for c, colour in enumerate(L.COLOURS):
            assert L.INDEX[f"{colour} {shape}"] == s * 8 + c


def test_round_trip_every_class():
    for name in L.CLASSES:
        vec = L.encode([name])
        assert vec.shape == (24,) and vec.sum() == 1
        assert L.decode(vec) == [name]


def test_encode_batch_and_decode_batch():
    batch = [["red sphere", "cyan cube"], ["gray cylinder"], ["blue cube", "green sphere", "yellow cylinder"]]
    hot = L.encode_batch(batch)
    assert hot.shape == (3, 24) and hot.dtype == torch.float32
    assert hot.sum(1).tolist() == [2, 1, 3]
    assert [sorted(x) for x in L.decode(hot)] == [sorted(x) for x in batch]


def test_parse():
    assert L.parse("red sphere, cyan cube") == ["red sphere", "cyan cube"]


@pytest.mark.parametrize("bad, message", [
    (["pink cube"], "'pink cube' is not an i-CLEVR object; did you mean 'purple cube'?"),
    ([], "empty object list"),
    (["red cube", "blue cube", "gray cube", "cyan cube"], "exceed the limit of 3"),
    (["red cube", "red cube"], "duplicate objects ['red cube']"),
    ([3], "not a string"),
    ("red cube", "got the string"),
    (5, "expected a list of objects such as ['red sphere', 'cyan cube'], got 5 (a int)"),
    (None, "got None (a NoneType)"),
    ({"red cube": 1}, "(a dict)"),  # a dict would iterate over its keys
])
def test_errors_are_one_line(bad, message):
    with pytest.raises(ValueError) as err:
        L.encode(bad)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_decode_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected shape"):
        L.decode(torch.zeros(23))
