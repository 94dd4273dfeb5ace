"""Jobs wire adapters to the core; each takes its adapters as parameters."""
