"""Operator and offline tools behind the CLI (replay, generate, tail, evaluations); the
worker never imports them."""
