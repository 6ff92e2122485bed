"""Shared by the ci/ ONNX Runtime helpers: the one session configuration every benchmark uses
(CPU provider, graph optimisation ALL, N intra-op threads) and the accuracy measures of
next-token distributions (cosine, argmax agreement, KL) against a reference."""

import numpy as np
import onnxruntime as ort


def session(path, threads=2):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def kl(ref, ours):
    """Mean over positions of KL(softmax(ref) || softmax(ours)), in nats."""
    p, q = log_softmax(ref), log_softmax(ours)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


def cosine(a, b):
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def accuracy(ours, ref):
    """(max abs, cosine, argmax agreement over the last axis, KL) of `ours` against `ref`."""
    err = float(np.abs(ours.astype(np.float64) - ref).max())
    agree = float((ours.argmax(-1) == ref.argmax(-1)).mean())
    return err, cosine(ours, ref), agree, kl(ref, ours)
