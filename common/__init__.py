"""What the three scripts share: sparsity distributions, masks, the topology update and FLOP counting."""
