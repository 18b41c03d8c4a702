"""show.history."""
