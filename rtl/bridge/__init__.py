"""The top layer: the transmit and receive paths, the bridge that joins them, its CSRs, and the disaggregated system."""
