"""The vocabulary every layer shares: settings, errors, the input and output contracts.
Imports nothing else of the project."""
