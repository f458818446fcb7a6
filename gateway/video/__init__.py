"""Video ingest: decoding files and streams into timestamped BGR frames."""
