"""The figures every report uses, computed one way: class predictions from
model outputs, accuracy, agreement between two models, bits per character."""

import numpy as np

__all__ = ["predicted_classes", "correct", "accuracy", "agreement", "char_bits", "bits_per_char", "zero_fraction"]


def predicted_classes(outputs):
    """Class ids from outputs of shape `(n, classes)` (a softmax: the largest)
    or `(n,)` / `(n, 1)` (one sigmoid unit: 1 above 0.5)."""
    outputs = np.asarray(outputs)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        return outputs.argmax(-1)
    return (outputs.reshape(len(outputs), -1)[:, 0] > 0.5).astype(int)


def correct(outputs, labels):
    """Per example, whether the predicted class is the label (a bool array)."""
    return predicted_classes(outputs) == np.asarray(labels).reshape(-1)


def accuracy(outputs, labels):
    """The fraction of examples whose predicted class is the label."""
    return float(correct(outputs, labels).mean())


def agreement(outputs, reference):
    """The fraction of examples on which two models predict the same class."""
    return float((predicted_classes(outputs) == predicted_classes(reference)).mean())


def zero_fraction(arrays):
    """The share of exact zeros over all elements of `arrays` (0 if empty)."""
    zeros = size = 0
    for value in arrays:
        value = np.asarray(value)
        zeros += int(value.size - np.count_nonzero(value))
        size += int(value.size)
    return zeros / size if size else 0.0


def bits_per_char(probs, labels):
    """Mean negative log2-probability of the true next character (lower is
    better); probabilities are clipped at 1e-12."""
    return float(char_bits(probs, labels).mean())


def char_bits(probs, labels):
    """Per character, the negative log2-probability of the true one
    (probabilities clipped at 1e-12); `bits_per_char` is their mean."""
    probs = np.asarray(probs)
    labels = np.asarray(labels).reshape(-1)
    return -np.log2(np.clip(probs[np.arange(len(probs)), labels], 1e-12, 1))
