"""The chat: a conversation in which each message is planned and run, and the next one can
build on the answers before it (``evolve chat``)."""
