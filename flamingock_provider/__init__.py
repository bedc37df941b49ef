"""flamingock_provider."""
