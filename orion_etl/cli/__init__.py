"""Thin Typer command modules: parse options, call the core or a job, render the result."""
