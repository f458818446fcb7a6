"""Outputs: where alerts and video leave the gateway."""
