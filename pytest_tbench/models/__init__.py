"""Which model a spec string names, how it is built or loaded, and how long it stays in memory."""
