"""Training loops for the translator and the noise-aware classifier."""
