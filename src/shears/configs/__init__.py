"""Shipped run configs (the embedded default and paper-scale settings)."""
