"""The built-in latent kinds: what the code between encoder and decoder is (registered as ``vaetool.latents``)."""
