"""Edge video-and-sensor gateway: cameras in, crowd and gathering alerts out."""

__version__ = "0.1.0"
