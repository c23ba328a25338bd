"""experiments package of the VQ-VAE suite."""
