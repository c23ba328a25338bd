"""The video domain (paper sec. 4.4): episodes recorded in a first-person 3D environment, the image VQ-VAE
trained on their frames, and an action-conditional prior that generates futures in its latent space."""
