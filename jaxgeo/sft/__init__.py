"""Solar surface flux transport on the sphere (HipFT-compatible)."""
