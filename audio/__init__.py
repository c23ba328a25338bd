"""audio package of the VQ-VAE suite."""
