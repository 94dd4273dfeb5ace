"""Pure transformations and rule definitions: DataFrames in, DataFrames out, no I/O."""
