"""A trained actor exported by `common/export.py`, run with numpy alone (and numba, if installed, for speed).
No torch: copy this file and the .npz to the device.

    policy = SparsePolicy("actor.npz")
    action = policy(observation)   # one observation (1-D float array) -> one action
"""

import numpy as np

try:
    import numba
except ImportError:  # numpy only: the same actions, a few times slower
    numba = None


def sparse_layer(x, indptr, indices, values, bias, relu):
    """y = W x + b over the stored connections (CSR), then max(0, y) if `relu`. Compiled by numba when available."""
    y = bias.copy()
    for i in range(len(y)):
        total = np.float32(0.0)
        for k in range(indptr[i], indptr[i + 1]):
            total += values[k] * x[indices[k]]
        y[i] += total
        if relu and y[i] < 0:
            y[i] = 0
    return y


compiled_sparse_layer = numba.njit(cache=True)(sparse_layer) if numba is not None else None


class SparsePolicy:
    def __init__(self, path: str, use_numba: bool = numba is not None):
        with np.load(path, allow_pickle=False) as file:
            arrays = dict(file)
        self.action_scale, self.action_bias, self.uses_numba = arrays["action_scale"], arrays["action_bias"], use_numba
        self.layers = []  # (kind, arrays, bias): "dense" (weight,), "csr" (indptr, indices, values) or "rows" for numpy
        for i in range(3):
            bias = arrays[f"layer{i}.bias"]
            if f"layer{i}.weight" in arrays:
                self.layers.append(("dense", (arrays[f"layer{i}.weight"],), bias))
                continue
            indptr, indices, values = (arrays[f"layer{i}.{key}"] for key in ("indptr", "indices", "values"))
            if use_numba:
                self.layers.append(("csr", (indptr.astype(np.int64), indices.astype(np.int64), values), bias))
            else:  # numpy: each stored weight's row, for one weighted bincount per layer
                rows = np.repeat(np.arange(len(bias)), np.diff(indptr.astype(np.int64)))
                self.layers.append(("rows", (rows, indices.astype(np.int64), values), bias))

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        x = np.asarray(observation, dtype=np.float32)
        for i, (kind, arrays, bias) in enumerate(self.layers):
            relu = i < len(self.layers) - 1
            if kind == "csr":
                x = compiled_sparse_layer(x, *arrays, bias, relu)
                continue
            if kind == "dense":
                x = arrays[0] @ x + bias
            else:
                rows, indices, values = arrays
                x = (bias + np.bincount(rows, weights=values * x[indices], minlength=len(bias))).astype(np.float32)
            x = np.maximum(x, 0) if relu else x
        return np.tanh(x) * self.action_scale + self.action_bias
