"""File I/O that keeps geometry and never leaves half-written files under final names."""
