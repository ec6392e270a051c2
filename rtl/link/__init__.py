"""The reliable link: the replay buffer (sender), the link receiver, selective repeat's reorder buffer, and their shared feedback signature."""
