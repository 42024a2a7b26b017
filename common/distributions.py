"""Per-layer densities: how a sparsity budget is spread over the weight matrices of a network.

For a fully connected layer with n_in inputs and n_out outputs, Erdos-Renyi (ER, Mocanu et al. 2018) and
Erdos-Renyi-Kernel (ERK, Evci et al. 2020) both give density proportional to (n_in + n_out) / (n_in * n_out):
small layers stay denser. They differ in how the proportionality constant epsilon is chosen.
"""

Shape = tuple[int, int]  # (n_out, n_in), as nn.Linear.weight


def er_scale(shape: Shape) -> float:
    n_out, n_in = shape
    return (n_in + n_out) / (n_in * n_out)


def uniform_densities(shapes: list[Shape], sparsity: float, dense: frozenset[int] = frozenset()) -> list[float]:
    """The same density for every layer not in `dense`, so that all the layers together have the given sparsity."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    numels = [n_out * n_in for n_out, n_in in shapes]
    budget = (1.0 - sparsity) * sum(numels) - sum(numels[i] for i in dense)
    density = budget / sum(n for i, n in enumerate(numels) if i not in dense)
    if density <= 0:
        raise ValueError(f"sparsity {sparsity} is unreachable: the layers kept dense already exceed the budget")
    return [1.0 if i in dense else density for i in range(len(shapes))]


def er_densities(shapes: list[Shape], epsilons: list[float]) -> list[float]:
    """ER with one epsilon per layer (DS-TD3, Sokar et al. 2022): p_l = min(1, eps_l * (n_in + n_out) / (n_in * n_out))."""
    return [min(1.0, eps * er_scale(shape)) for shape, eps in zip(shapes, epsilons, strict=True)]


def erk_densities(shapes: list[Shape], sparsity: float, dense: frozenset[int] = frozenset()) -> list[float]:
    """One epsilon for all layers, solved so that the layers together have the given sparsity (RigL's ERK; RLx2 solves
    it over all Linear weights of a module). Layers listed in `dense` stay dense and spend budget. A layer whose density
    would exceed 1 is made dense and epsilon re-solved; epsilon only grows, so making all of them dense at once reaches
    the same fixed point as one at a time (the released code)."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    numels = [n_out * n_in for n_out, n_in in shapes]
    dense = set(dense)
    while True:
        sparse = [i for i in range(len(shapes)) if i not in dense]
        # the kept weights of the sparse layers, minus what the dense layers spend beyond the average; summed layer by
        # layer in the released order (`DST_Scheduler.sparse_set`), so densities agree with it to the last bit
        budget = sum(-n * sparsity if i in dense else n * (1.0 - sparsity) for i, n in enumerate(numels))
        if not sparse or budget <= 0:
            if sparsity == 0.0 and not sparse:
                return [1.0] * len(shapes)
            raise ValueError(f"sparsity {sparsity} is unreachable: the layers kept dense already exceed the budget")
        epsilon = budget / sum(er_scale(shapes[i]) * numels[i] for i in sparse)
        too_dense = {i for i in sparse if epsilon * er_scale(shapes[i]) > 1.0}
        if not too_dense:
            return [1.0 if i in dense else epsilon * er_scale(shapes[i]) for i in range(len(shapes))]
        dense |= too_dense
