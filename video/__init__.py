"""video package of the VQ-VAE suite."""
