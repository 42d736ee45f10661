"""Live mode: current values polled from a source and published to the real-time topic."""
