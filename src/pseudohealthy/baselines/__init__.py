"""The paper's comparison methods that are not a setting of the diffusion pipeline: the denoising
autoencoder and the voxel-wise control z-score. The diffusion baselines (AnoDDPM, Wolleb's guided
DDIM, the image-conditioned DDPM) are configurations of ``pseudohealthy.detect`` (see
``pseudohealthy.evaluation.methods``)."""
