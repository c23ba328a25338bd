"""priors package of the VQ-VAE suite."""
