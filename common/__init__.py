"""What the three scripts share: sparsity distributions, masks, the topology update and FLOP counting; plus the sparse
kernel backend (`kernels.py`), the torch-free exported actor (`export.py`, `sparse_policy.py`) and a leaner fused Adam
(`speed.py`)."""
