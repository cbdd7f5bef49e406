"""Our own diffusion pieces: noise schedule, DDIM inversion and sampling, classifier guidance."""
