"""Domain-free core of the VQ-VAE suite: quantizers, metrics, training machinery."""
