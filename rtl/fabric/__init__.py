"""The device fabric: address and ID translation with access control, and its CSRs."""
