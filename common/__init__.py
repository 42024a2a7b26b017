"""What the four scripts share: sparsity distributions, masks, the topology update and FLOP counting; plus the sparse
kernel backend (`kernels.py`), the torch-free exported actor (`export.py`, `sparse_policy.py`), stopping and resuming
a run (`resume.py`), argument checks (`checks.py`) and W&B tracking (`tracking.py`)."""
