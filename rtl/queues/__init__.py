"""Per-class queues with credits and ordering: the class queues, the credit loop's blocks, the ordering checker."""
