import numpy as np
import pytest

from autojoint.arrays.labels import label_argmax


@pytest.mark.parametrize("num_classes", [1, 2, 3, 5])
def test_equals_numpy_argmax_with_ties_resolved_to_the_first_class(num_classes: int) -> None:
    rng = np.random.default_rng(num_classes)
    # quantised scores: many voxels tie between two or more classes
    scores = rng.integers(0, 4, size=(num_classes, 6, 7, 8)).astype(np.float32) / 4
    labels = label_argmax(scores)
    assert labels.dtype == np.uint8 and labels.shape == (6, 7, 8)
    np.testing.assert_array_equal(labels, np.argmax(scores, axis=0))


def test_known_answer_and_the_input_is_left_alone() -> None:
    scores = np.array([[0.2, 0.5, 0.1], [0.7, 0.5, 0.1], [0.1, 0.0, 0.8]], np.float32)
    kept = scores.copy()
    np.testing.assert_array_equal(label_argmax(scores), [1, 0, 2])
    np.testing.assert_array_equal(scores, kept)


def test_more_classes_than_uint8_holds_is_refused() -> None:
    with pytest.raises(ValueError, match="257 classes"):
        label_argmax(np.zeros((257, 2), np.float32))
