"""Running a session on several workers: pytest-xdist."""
