"""image package of the VQ-VAE suite."""
