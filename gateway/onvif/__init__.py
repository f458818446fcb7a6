"""ONVIF: resolve cameras, discover them, patrol PTZ presets, and listen to camera events."""
